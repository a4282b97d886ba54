"""The PruneModel environment: any trained PyTorch model, one pruning ratio per prunable group (AMC)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from torch import nn

from nasprune.child.data import ChildDataModule, DigitsDataModule
from nasprune.child.failures import FailureLog, InvalidDesignError, check_fits_input, classify
from nasprune.child.metrics import count_flops, count_params, model_size_bytes
from nasprune.child.pipeline import ChildTraining, EvalResult, timed_latency
from nasprune.child.prune_model import (
    Pretrain,
    PrunableGroups,
    build_network,
    load_weights,
    own_hyperparameters,
    pretrained_network,
    prune_and_score,
    validation_accuracy,
)
from nasprune.child.rewards import Reward, TargetWindowReward
from nasprune.config import ConfigError, NonNegativeInt, PositiveFraction, UnitRatio, instantiate, under
from nasprune.decisions import DecisionCopies
from nasprune.envs.cache import EvaluationCache, timed_lookup
from nasprune.envs.nasprune_env import build_reward, check_failure_reward, load_data

log = logging.getLogger(__name__)

# AMC's layer embedding (He et al. 2018), each feature scaled to [0, 1]
LAYER_FEATURES = (
    "index",  # t / (groups − 1)
    "channels",  # the group's width / the widest group's
    "in_channels",  # the group's first layer's input channels / the largest such
    "kernel",  # its kernel / the largest
    "stride",  # its stride / the largest
    "flops_share",  # unpruned FLOPs of the layers whose outputs the group prunes / the network's
    "flops_removed",  # FLOPs the ratios chosen so far remove / the network's
    "flops_rest",  # the share of the groups after this one
    "prev_ratio",  # the ratio chosen at the previous step (0 at the first)
)
NOT_TRAINABLE_IMPORTANCES = ("taylor",)


class PruneModelEnv(DecisionCopies, gym.Env):
    """How much to prune each layer of a trained network, decided group by group (AMC, with our controller).

    The network is `model` (a class path or factory with its init args, e.g.
    `torchvision.models.resnet18`) behind an optional `adapter` for the data's input (e.g. a
    1×1 conv from 1 to 3 channels). Its weights come from `checkpoint` (a `state_dict` or a
    Lightning checkpoint) or from a `pretrain` run on the data, kept under `pretrain_dir` keyed by
    model, adapter, data and budget, so a second search reuses them.

    One step per prunable group of torch-pruning's dependency graph (coupled layers, both sides
    of a residual add, are one decision), in the network's order; the action picks a ratio of
    `ratios`. The observation is AMC's layer embedding (`LAYER_FEATURES`, a `Box`) and an
    `action_mask`: with `flops_target` (a fraction of the unpruned FLOPs), the ratios after which
    no completion stays under `target · (1 + flops_tolerance)` are masked (a hard budget: no
    episode ends over it), as are those after which none reaches `target · (1 − flops_tolerance)`;
    where no ratio can reach that floor any more, only the one(s) leaving the most FLOPs are allowed.

    The last step prunes a copy of the trained network by the chosen ratios (`training.importance`),
    re-estimates its BatchNorm statistics on `recalibration_batches` training batches (EagleEye's
    adaptive BN: a cheap, faithful ranking of candidates when the fine-tune is short or none), fine-tunes it (`training.finetune_epochs`, `finetune_lr`, `limit_train_batches`; distilled from
    the unpruned network with `training.distill_alpha`), scores it on the validation split and
    rewards it (`reward`; by default a `TargetWindowReward` on `flops_target`, else a
    `LinearReward`). A ratio that empties a group, a diverging fine-tune or any other failure gets
    `failure_reward` and an `error_kind`; the search goes on. Only the last step evaluates, so it
    offers `decision_env()` (`nasprune.decisions`) for parallel workers' queue.
    """

    metadata = {"render_modes": []}

    @own_hyperparameters
    def __init__(
        self,
        model: Mapping[str, Any] | nn.Module | None = None,
        adapter: Mapping[str, Any] | nn.Module | None = None,
        checkpoint: str | None = None,
        datamodule: Mapping[str, Any] | ChildDataModule | None = None,
        pretrain: Mapping[str, Any] | Pretrain | None = None,
        pretrain_dir: str = "runs/pretrained",
        ratios: Sequence[float] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75),
        ignored_layers: Sequence[str] = (),
        flops_target: PositiveFraction | None = None,
        flops_tolerance: UnitRatio = 0.03,
        recalibration_batches: NonNegativeInt = 0,
        training: Mapping[str, Any] | ChildTraining | None = None,
        reward: Mapping[str, Any] | Reward | None = None,
        failure_reward: float = -1.0,
        cache: bool = True,
    ) -> None:
        super().__init__()
        if model is None:
            raise ConfigError("model", "is required: {class_path: torchvision.models.resnet18, init_args: {num_classes: 10}} or your own")
        self.ratios = _check_ratios(ratios)
        self.recalibration_batches = recalibration_batches
        self.failure_reward = check_failure_reward(failure_reward)
        unused = sorted({"epochs", "lr"} & set(training if isinstance(training, Mapping) else ()))
        if unused:
            raise ConfigError(f"training.{unused[0]}", f"is not used by PruneModel (the network comes trained); set pretrain.{unused[0]}")
        self.training = under("training", ChildTraining.from_config, training)
        self.pretrain = under("pretrain", Pretrain.from_config, pretrain)
        for key, bad in (("importance", self.training.importance in NOT_TRAINABLE_IMPORTANCES), ("sparsity", self.training.sparsity > 0)):
            if bad:
                raise ConfigError(f"training.{key}", f"{getattr(self.training, key)!r} is not supported by PruneModel")
        self.datamodule = instantiate(datamodule, ChildDataModule, "datamodule", default=DigitsDataModule)
        load_data(self.datamodule)
        self.input_shape = tuple(self.datamodule.input_shape)
        self.num_classes = self.datamodule.num_classes
        self.ignored_layers = tuple(ignored_layers)

        net = build_network(model, adapter, self.pretrain.seed)
        try:
            check_fits_input(net, self.input_shape, self.num_classes)
        except InvalidDesignError as err:
            raise ConfigError("adapter" if adapter is not None else "model", f"the network {err}") from None
        if checkpoint is not None:
            load_weights(net, checkpoint)
            self.pretrained_from = str(checkpoint)
        else:
            net, self.pretrained_from = pretrained_network(net, self.datamodule, self.training, self.pretrain, Path(pretrain_dir))
        self.network = net.eval()
        self.groups = PrunableGroups(net, self.input_shape, self.num_classes, self.ignored_layers)
        if not len(self.groups):
            raise ConfigError("model", "torch-pruning finds no prunable group in it (all layers ignored?)")
        self.flops_unpruned = count_flops(net, self.input_shape)
        self.params_unpruned = count_params(net)
        self.size_unpruned = model_size_bytes(net)
        self.accuracy_unpruned = validation_accuracy(net, self.datamodule)
        self.flops_target = flops_target
        self.flops_tolerance = float(flops_tolerance)
        self._budget = self._flops_budget()
        self.reward_fn = self._reward(reward)
        self.cache = EvaluationCache(_ratios_key) if cache else None
        self.failures = FailureLog(log)

        self._max_channels = max(g.channels for g in self.groups.groups)
        self._max_in = max(g.in_channels for g in self.groups.groups)
        self._max_kernel = max(g.kernel for g in self.groups.groups)
        self._max_stride = max(g.stride for g in self.groups.groups)
        self.action_space = spaces.Discrete(len(self.ratios))
        self.observation_space = spaces.Dict(
            {
                "layer": spaces.Box(0.0, 1.0, shape=(len(LAYER_FEATURES),), dtype=np.float32),
                "action_mask": spaces.MultiBinary(len(self.ratios)),
            }
        )
        self._chosen: list[float] = []
        self._over = False

    def _flops_budget(self) -> tuple[float, float]:
        """The FLOPs window a design must land in (`flops_target` ± `flops_tolerance`), refused when out of reach."""
        if self.flops_target is None:
            return (0.0, float("inf"))
        low, high = (self.flops_target * (1 + sign * self.flops_tolerance) * self.flops_unpruned for sign in (-1, 1))
        fewest = self.groups.flops([max(self.ratios)] * len(self.groups))
        if fewest > high:
            raise ConfigError("flops_target", f"{self.flops_target} is out of reach: the largest ratio everywhere leaves {fewest / self.flops_unpruned:.3f} of the FLOPs")
        return (low, high)

    def _reward(self, reward: Mapping[str, Any] | Reward | None) -> Reward:
        """The reward, scaled by the unpruned network's costs (a FLOPs target's window reward by default)."""
        if reward is None and self.flops_target is not None:
            reward = TargetWindowReward(target=self.flops_target * self.flops_unpruned, tolerance=self.flops_tolerance)
        reference: dict[str, float] = {"flops": self.flops_unpruned, "params": self.params_unpruned, "size_bytes": self.size_unpruned}
        if self.training.latency_batch_size is not None:
            reference["latency_ms"] = cast(float, timed_latency(self.network, self.input_shape, self.training, {}))  # a number: latency_batch_size is set
        return build_reward(reward, self.training).with_reference(reference)

    # --- the episode -------------------------------------------------------------------------

    def layer_features(self, step: int, chosen: Sequence[float]) -> np.ndarray:
        """AMC's embedding of group `step` given the ratios `chosen` for the groups before it."""
        n, f0 = len(self.groups), self.flops_unpruned
        removed = (f0 - self.groups.flops([*chosen, *[None] * (n - len(chosen))])) / f0
        if step >= n:  # the episode is over: nothing left to describe
            return np.array([1.0, 0, 0, 0, 0, 0, removed, 0, chosen[-1] if chosen else 0.0], dtype=np.float32)
        group = self.groups.groups[step]
        features = [
            step / max(n - 1, 1),
            group.channels / self._max_channels,
            group.in_channels / self._max_in,
            group.kernel / self._max_kernel,
            group.stride / self._max_stride,
            self.groups.owned(step) / f0,
            removed,
            sum(self.groups.owned(g) for g in range(step + 1, n)) / f0,
            chosen[-1] if chosen else 0.0,
        ]
        return np.clip(np.array(features, dtype=np.float32), 0.0, 1.0)

    def action_mask(self, chosen: Sequence[float]) -> np.ndarray:
        """The ratios for the next group after which the budget can still be met (see the class)."""
        rest = len(self.groups) - len(chosen) - 1
        low, high = self._budget
        fewest = np.array([self.groups.flops([*chosen, r, *[max(self.ratios)] * rest]) for r in self.ratios])
        most = np.array([self.groups.flops([*chosen, r, *[0.0] * rest]) for r in self.ratios])
        under = fewest <= high
        both = under & (most >= low)
        if both.any():
            return both.astype(np.int8)
        # no ratio can reach the window any more: the budget stays hard, and the nearest to it is kept
        return (under & (most == most[under].max())).astype(np.int8)

    def _observation(self) -> dict[str, np.ndarray]:
        step = len(self._chosen)
        done = step >= len(self.groups) or self._over
        mask = np.zeros(len(self.ratios), dtype=np.int8) if done else self.action_mask(self._chosen)
        return {"layer": self.layer_features(step, self._chosen), "action_mask": mask}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self._chosen = []
        self._over = False
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        step = len(self._chosen)
        if step >= len(self.groups) or self._over:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = int(action)
        if not self._observation()["action_mask"][action]:
            self._over = True
            info = {"error": f"action {action} is masked out at step {step}", "error_kind": "invalid_action"}
            return self._observation(), self.failure_reward, True, False, info
        self._chosen.append(self.ratios[action])
        if len(self._chosen) < len(self.groups):
            return self._observation(), 0.0, False, False, {}
        reward, info = self._evaluate(list(self._chosen))
        return self._observation(), reward, True, False, info

    # --- the evaluation ----------------------------------------------------------------------

    def ratio_map(self, ratios: Sequence[float]) -> dict[str, float]:
        """Each group's name (its first layer) → its ratio."""
        return {g.name: float(r) for g, r in zip(self.groups.groups, ratios)}

    def remember(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add evaluations finished elsewhere (this run's history, other env copies) to the cache."""
        return 0 if self.cache is None else self.cache.remember(records)

    def evaluate(self, ratios: Sequence[float], training: ChildTraining | None = None, seed: int = 0) -> EvalResult:
        """A copy of the trained network pruned by `ratios` (one per group, in order), its BatchNorm
        re-estimated, fine-tuned by `training` (default: the env's) and scored; raises on failure
        (`InvalidDesignError` for a ratio that leaves a group no channel)."""
        for group, ratio in zip(self.groups.groups, ratios, strict=True):
            if group.kept(ratio) < 1:
                raise InvalidDesignError(f"ratio {ratio:g} leaves group {group.name} ({group.channels} channels) with none")
        training = training or self.training
        return prune_and_score(
            self.network, self.ratio_map(ratios), self.datamodule, training, seed, self.accuracy_unpruned, self.ignored_layers, self.recalibration_batches
        )

    def _evaluate(self, ratios: list[float]) -> tuple[float, dict[str, Any]]:
        named = self.ratio_map(ratios)
        key = json.dumps(named, sort_keys=True)
        child_seed = int(self.np_random.integers(2**31))
        cached = timed_lookup(self.cache, key)
        if cached is not None:
            return float(cached["reward"]), cached
        if self.deciding:  # its cost: the pruned net's FLOPs (counted from the groups: no net is built), what fine-tuning it costs
            return self.pending(key if self.cache is not None else None, self.groups.flops(ratios))
        start = time.perf_counter()
        label = " ".join(f"{name.removeprefix('model.')}={r:g}" for name, r in named.items())
        info: dict[str, Any] = {"ratios": named, "design_str": label}
        try:
            result = self.evaluate(ratios, seed=child_seed)
            info.update(result.metrics())
            info["flops_ratio"] = result.flops / self.flops_unpruned
            info.update(self.reward_fn(info))
        except Exception as err:  # a failing candidate earns the penalty; the search goes on
            kind, message = classify(err)
            self.failures.record(kind, message, label)
            info = {"ratios": named, "design_str": label, "error_kind": kind, "error": message, "reward": self.failure_reward}
        info["seconds/evaluate"] = time.perf_counter() - start
        if self.cache is not None:
            self.cache.add(key, info)
        return float(info["reward"]), info


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(r) for r in ratios)
    if not values:
        raise ConfigError("ratios", "needs at least one ratio")
    bad = [r for r in values if not 0.0 <= r <= 1.0]
    if bad:
        raise ConfigError("ratios", f"each must be in [0, 1], got {bad[0]!r}")
    if len(set(values)) != len(values):
        raise ConfigError("ratios", f"has repeats: {list(values)}")
    return values


def _ratios_key(record: Mapping[str, Any]) -> str | None:
    """The cache key of a recorded PruneModel evaluation (a history line or an `info`)."""
    ratios = record.get("ratios")
    return json.dumps(dict(ratios), sort_keys=True) if isinstance(ratios, Mapping) else None
