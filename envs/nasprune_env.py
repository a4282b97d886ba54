"""The NasPrune environment: one categorical decision per step, a real child evaluation at the end."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nasprune.child.budget import budget_mask
from nasprune.child.data import ChildDataModule, DigitsDataModule
from nasprune.child.deploy import score_int8
from nasprune.child.failures import FailureLog, InvalidDesignError, check_fits_input, classify
from nasprune.child.metrics import count_flops, count_params, measure_latency, model_size_bytes
from nasprune.child.model import build_model
from nasprune.child.pipeline import ChildTraining, check_trainer_settings, evaluate_design
from nasprune.child.quantize import bitops, size_bits
from nasprune.child.rewards import LinearReward, Reward
from nasprune.child.search_space import Design, SearchSpace
from nasprune.config import ConfigError, instantiate
from nasprune.decisions import DecisionCopies
from nasprune.envs.cache import EvaluationCache, timed_lookup

log = logging.getLogger(__name__)


class NasPruneEnv(DecisionCopies, gym.Env):
    """Joint architecture + per-layer pruning-ratio search as a Gymnasium episode.

    Decisions run layer by layer: op, width, prune ratio (then downsampling and skip when the
    space has them). The observation holds the step index, the previous action (`max_choices`
    before the first step) and an `action_mask` of the choices valid now (`SearchSpace.action_mask`:
    one choice where a value cannot matter; no downsampling of a 1×1 map, no strided identity). The last
    step builds, trains, prunes, fine-tunes and scores the child; its reward and every metric go
    into `info`. Rewards before the last step are 0.

    An action outside the mask ends the episode with `failure_reward`, as does a child that
    fails (`info` gets `error_kind` and `error`; see `nasprune.child.failures`): a failing
    candidate never stops a search. With `cache` (the default) a design already evaluated in
    this run is not trained again: the step returns the first evaluation's `info`, marked
    `cached: True`. Its decisions do not depend on evaluations, so it offers `decision_env()`
    (`nasprune.decisions`): parallel workers then evaluate an update's designs from a queue.

    With `mask_budget` the search is budget-aware, as MnasNet's and APQ's hard constraints: the
    mask also removes every choice after which no design of the space meets the reward's budget
    (a `TargetWindowReward`'s window or a `HardBudgetReward`'s ceiling; `nasprune.child.budget`),
    so no evaluation is spent on a child that cannot be delivered. A budget that no design meets
    is refused at once.
    """

    action_space: spaces.Discrete

    metadata = {"render_modes": []}

    def __init__(
        self,
        search_space: SearchSpace | None = None,
        datamodule: ChildDataModule | None = None,
        training: ChildTraining | None = None,
        reward: Reward | None = None,
        failure_reward: float = -1.0,
        cache: bool = True,
        mask_budget: bool = False,
    ) -> None:
        """The settings are typed for the CLI (`data.env_kwargs.*` merges and validates like any
        LightningCLI group); from `gymnasium.make` each may also be given as YAML data: a mapping of
        fields, or `{class_path, init_args}` for `datamodule` and `reward`."""
        super().__init__()
        try:
            self.space = SearchSpace.from_config(search_space)
        except ConfigError as err:
            raise err.under("search_space") from None
        try:
            self.training = ChildTraining.from_config(training)
            check_trainer_settings(self.training)
        except ConfigError as err:
            raise err.under("training") from None
        if self.space.bits and self.training.sparsity > 0:
            raise ConfigError("training.sparsity", "unstructured sparsity does not combine with search_space.bits (fake-quantized weights); use one")
        self.datamodule = instantiate(datamodule, ChildDataModule, "datamodule", default=DigitsDataModule)
        load_data(self.datamodule)
        self.reward_fn = build_reward(reward, self.training).with_reference(self._reference_costs())
        self.failure_reward = check_failure_reward(failure_reward)
        self.budget = budget_mask(self.space, self.datamodule.input_shape, self.datamodule.num_classes, self.reward_fn) if mask_budget else None
        self.cache = EvaluationCache(_design_key) if cache else None
        self.failures = FailureLog(log)

        n_steps = len(self.space.decisions)
        n_actions = self.space.max_choices
        self.action_space = spaces.Discrete(n_actions)
        self.observation_space = spaces.Dict(
            {
                "step": spaces.Discrete(n_steps + 1),
                "prev_action": spaces.Discrete(n_actions + 1),
                "action_mask": spaces.MultiBinary(n_actions),
            }
        )
        self._actions: list[int] = []
        self._over = False  # set by a masked action: the episode ended before its last decision

    def remember(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add evaluations finished elsewhere (this run's history, other env copies) to the cache."""
        return 0 if self.cache is None else self.cache.remember(records)

    def _reference_costs(self) -> dict[str, float]:
        """Costs of the most expensive design in the space (unpruned, widest, costliest op, widest skip)."""
        shape, classes = self.datamodule.input_shape, self.datamodule.num_classes
        designs = self.space.largest_designs() or [Design(())]
        nets = [build_model(d, shape[0], classes, self.space.stem_width) for d in designs]
        flops = [count_flops(n, shape) for n in nets]
        reference: dict[str, float] = {
            "flops": max(flops),
            "params": max(count_params(n) for n in nets),
            "size_bytes": max(model_size_bytes(n) for n in nets),
            "size_bits": max(size_bits(n) for n in nets),
            "bitops": max(bitops(n, shape) for n in nets),
        }
        if self.training.latency_batch_size is not None:
            costliest = nets[flops.index(max(flops))]
            t = self.training
            if t.quantize == "int8":  # the reward sees deployed latencies: the reference is one too
                deployed = score_int8(costliest, self.datamodule, t.calibration_images, t.latency_batch_size, t.latency_warmup, t.latency_repeats)
                reference["latency_ms"] = deployed["latency_ms"]
            else:
                reference["latency_ms"] = measure_latency(costliest, shape, self.training.latency_batch_size, t.latency_warmup, t.latency_repeats)
        return reference

    def _observation(self) -> dict[str, Any]:
        step = len(self._actions)
        mask = np.zeros(self.action_space.n, dtype=np.int8)
        if step < len(self.space.decisions) and not self._over:
            valid = self.space.action_mask(step, self._actions, self.datamodule.input_shape[1:])
            if self.budget is not None:
                valid = [a and b for a, b in zip(valid, self.budget(step, self._actions))]
            mask[: len(valid)] = valid
        prev = self._actions[-1] if self._actions else self.action_space.n
        return {"step": step, "prev_action": prev, "action_mask": mask}

    def _training_flops(self, design: Design) -> float | None:
        """What training `design` costs, in forward FLOPs of one example over its epochs (the unpruned net's,
        then the pruned one's while fine-tuning): the `evaluation_cost` a work queue starts the costliest
        evaluations of an update by. None for a design whose feature map would collapse (it fails at once)."""
        shape, classes = self.datamodule.input_shape, self.datamodule.num_classes
        try:
            trained, fine_tuned = (
                count_flops(build_model(net, shape[0], classes, self.space.stem_width, input_size=shape[1:]), shape)
                for net in (design, design.pruned())
            )
        except ValueError:
            return None
        return float(self.training.epochs * trained + self.training.finetune_epochs * fine_tuned)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._actions = []
        self._over = False
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        step = len(self._actions)
        if step >= len(self.space.decisions) or self._over:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = int(action)
        if not self._observation()["action_mask"][action]:
            self._actions.append(action)
            self._over = True
            info = {"error": f"action {action} is masked out at step {step}", "error_kind": "invalid_action"}
            return self._observation(), self.failure_reward, True, False, info
        self._actions.append(action)
        if len(self._actions) < len(self.space.decisions):
            return self._observation(), 0.0, False, False, {}
        design = self.space.design_from_actions(self._actions)
        reward, info = self._evaluate(design)
        return self._observation(), reward, True, False, info

    def _evaluate(self, design: Design) -> tuple[float, dict[str, Any]]:
        key = design.to_json()
        child_seed = int(self.np_random.integers(2**31))
        cached = timed_lookup(self.cache, key)
        if cached is not None:
            return float(cached["reward"]), cached
        if self.deciding:
            return self.pending(key if self.cache is not None else None, self._training_flops(design))
        start = time.perf_counter()
        info: dict[str, Any] = {"design": design.to_dict(), "design_str": str(design)}
        try:
            shape, classes = self.datamodule.input_shape, self.datamodule.num_classes
            try:
                net = build_model(design, shape[0], classes, self.space.stem_width, input_size=shape[1:])
            except ValueError as err:  # a feature map would collapse: the reason names the layer
                raise InvalidDesignError(str(err)) from err
            check_fits_input(net, shape, classes)
            result = evaluate_design(design, self.datamodule, self.training, self.space.stem_width, child_seed)
            info.update(result.metrics())
            if result.curves:
                info["child_curves"] = result.curves
            info.update(self.reward_fn(info))
        except Exception as err:  # a failing child earns the penalty; the search goes on
            kind, message = classify(err)
            self.failures.record(kind, message, str(design))
            info = {"design": info["design"], "design_str": info["design_str"], "error_kind": kind, "error": message}
            info["reward"] = self.failure_reward
        info["seconds/evaluate"] = time.perf_counter() - start
        if self.cache is not None:
            self.cache.add(key, info)
        return float(info["reward"]), info


def build_reward(reward: Mapping[str, Any] | Reward | None, training: ChildTraining) -> Reward:
    """The configured reward (a `LinearReward` by default), refused if it needs a cost the training does not measure."""
    reward_fn = instantiate(reward, Reward, "reward", default=LinearReward)  # type: ignore[type-abstract]  # mypy refuses an abstract class as type[T]; instantiate only checks against it
    if "latency_ms" in reward_fn.metrics_needed and training.latency_batch_size is None:
        raise ConfigError("reward.init_args.cost", "latency_ms is measured only with training.latency_batch_size set")
    return reward_fn


def check_failure_reward(value: float) -> float:
    if not np.isfinite(float(value)):
        raise ConfigError("failure_reward", f"must be a finite number, got {value!r}")
    return float(value)


def load_data(datamodule: ChildDataModule) -> None:
    """Load the child data now, so a missing or corrupt data root stops the run before any search."""
    try:
        datamodule.prepare_data()  # a data set that is neither here nor downloadable fails here
        datamodule.setup("fit")
    except ConfigError as err:
        raise err.under("datamodule.init_args") from None
    except (OSError, RuntimeError, ValueError) as err:
        root = getattr(datamodule, "root", None) or getattr(datamodule, "hparams", {}).get("root")
        where = next((str(p) for p in (getattr(err, "filename", None), root) if p), None)
        prefix = "" if where is None or where in str(err) else f"{where}: "
        raise ConfigError("datamodule", f"{prefix}cannot load the data of {type(datamodule).__name__} ({type(err).__name__}: {err})") from None


def _design_key(record: Mapping[str, Any]) -> str | None:
    """The cache key of a recorded NasPrune evaluation (a history line or an `info`)."""
    design = record.get("design")
    return Design.from_dict(design).to_json() if isinstance(design, Mapping) else None
