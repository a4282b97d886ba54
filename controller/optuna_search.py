"""Bayesian optimisation and friends from Optuna (TPE, Gaussian processes, NSGA-II) as a search strategy.

Optuna's ask-and-tell interface, define-by-run: each episode is a trial (`study.ask()`), each env
step one `trial.suggest_categorical`, the episode's end a `study.tell`. Episodes played in one
batch (`data.episodes_per_update`) are trials asked before any of them is told; TPE's
`constant_liar` (on by default in Optuna 5) keeps them apart.

Masks. Optuna requires a parameter's choices to be the same in every trial. A step whose
`action_mask` allows every action suggests the parameter `step{t}` over all of them; a step whose
mask forbids some suggests `step{t}:{mask}` (e.g. `step3:01101`) over the allowed ones only. A name
therefore always carries one fixed distribution, a masked action is never suggested (so never
evaluated), and the sampler sees the same parameter again wherever the same choices are offered.

The study lives in the run directory: `optuna.db` (SQLite through `optuna.storages.RDBStorage`;
`optuna-dashboard sqlite:///RUN_DIR/optuna.db` opens it) or, with `storage: journal`,
`optuna.log` (Optuna's journal file; `optuna-dashboard RUN_DIR/optuna.log`). The sampler itself
works on an in-memory copy of the study and each update's trials are written to the file in one
go: SQLite through SQLAlchemy costs tens of milliseconds per trial, which is nothing next to a
trained child but would be most of a tabular search's time. `--ckpt_path last` resumes the study:
trials told after the checkpoint being resumed are dropped from the file (it is rebuilt from the
trials before it), and the sampler's own state is in the checkpoint, so a resumed search asks
what the uninterrupted one would.
"""

from __future__ import annotations

import inspect
import json
import logging
import pickle
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import torch
from gymnasium import spaces
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nasprune.config import ConfigError, import_object, instantiate
from nasprune.controller.baselines import GradientFreeStrategy
from nasprune.controller.episode import Episode

STORAGE_FILES = {"sqlite": "optuna.db", "journal": "optuna.log"}
PARETO_FILE = "pareto_front.json"


@dataclass
class TrialStep:
    """An episode's trial and the step it is at."""

    trial: optuna.Trial
    step: int = 0


def make_sampler(spec: dict[str, Any] | None, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler `{class_path, init_args}` (default: TPE), seeded by `seed` if it takes a seed and
    `init_args` gives none."""
    key = "model.init_args.sampler"
    spec = dict(spec or {"class_path": "optuna.samplers.TPESampler"})
    given = spec.get("init_args") or {}
    if "class_path" in spec:
        cls = import_object(str(spec["class_path"]), f"{key}.class_path")
        if inspect.isclass(cls) and "seed" in inspect.signature(cls).parameters:
            spec["init_args"] = {"seed": seed, **(spec.get("init_args") or {})}
    try:
        return instantiate(spec, optuna.samplers.BaseSampler, key)  # type: ignore[type-abstract]  # mypy refuses an abstract class as type[T]; instantiate only checks against it
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # the sampler's own check of its arguments
        raise ConfigError(f"{key}.init_args", f"{spec['class_path']} rejected {json.dumps(given)}: {err}") from None


class OptunaSearch(GradientFreeStrategy):
    """Any Optuna sampler over the env's decisions; one objective (the reward) or several (`objectives`)."""

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        sampler: dict[str, Any] | None = None,
        objectives: list[str] | None = None,
        directions: list[Literal["maximize", "minimize"]] | None = None,
        storage: Literal["sqlite", "journal"] | None = "sqlite",
        study_name: str = "nasprune",
        seed: int | None = None,
    ) -> None:
        """
        Args:
            observation_space: the env's observation space (linked from the data module by the CLI).
            action_space: the env's action space; must be `Discrete`.
            sampler: an Optuna sampler as `{class_path, init_args}`: `optuna.samplers.TPESampler`
                (the default), `optuna.samplers.GPSampler`, `optuna.samplers.NSGAIISampler`, …;
                its `seed` defaults to the strategy's seed.
            objectives: keys of the final step's `info` told to the study, e.g. `[accuracy, flops]`
                (two or more: a multi-objective study whose Pareto front the run writes to
                `pareto_front.json`); default: the episode's reward alone.
            directions: one per objective (default: maximize the first, minimize the others).
            storage: the study's file in the run directory: `sqlite` (`optuna.db`) or `journal`
                (`optuna.log`), both resumable and opened by optuna-dashboard; `null`: none (a run
                whose study cannot be resumed).
            study_name: the study's name in the storage.
            seed: seed of the sampler (and the strategy's generator); by default torch's initial seed.
        """
        super().__init__(observation_space, action_space, seed)
        objectives = list(objectives or ["reward"])
        senses: list[Literal["maximize", "minimize"]] = list(directions) if directions is not None else ["maximize"]
        if directions is None:
            senses += ["minimize"] * (len(objectives) - 1)
        if len(senses) != len(objectives):
            raise ConfigError("model.init_args.directions", f"needs one direction per objective ({len(objectives)}), got {len(senses)}")
        self.save_hyperparameters(ignore=["observation_space", "action_space"])
        self.study_name, self.storage = study_name, storage
        self.objectives, self.directions = objectives, senses
        sampler_seed = int(self.rng.integers(2**31)) if seed is None else seed
        self.sampler = make_sampler(sampler, sampler_seed)
        optuna.logging.set_verbosity(logging.WARNING)  # a line per trial would drown the progress bar
        self.study = self._new_study()  # what the sampler reads: in memory (replaced when a fit starts)
        self.stored_study: optuna.Study | None = None  # its copy in the run directory
        self._trials_told = 0  # trials of the study this run's checkpoint knows of
        self.pending: deque[optuna.Trial] = deque()  # asked, in the order their episodes come back

    # ---- the study ----

    def _new_study(self, storage: optuna.storages.BaseStorage | None = None, load_if_exists: bool = False) -> optuna.Study:
        return optuna.create_study(
            storage=storage, sampler=self.sampler, directions=self.directions, study_name=self.study_name, load_if_exists=load_if_exists
        )

    def _open_stored_study(self) -> optuna.Study | None:
        """The study's file in the run directory, holding exactly the trials this run has told."""
        trainer, kind = self._trainer, self.storage
        if kind is None or trainer is None:
            return None
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / STORAGE_FILES[kind]
        storage: optuna.storages.BaseStorage
        if kind == "sqlite":
            storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        else:
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        stored = self._new_study(storage, load_if_exists=True)
        trials = stored.get_trials(deepcopy=False)
        if len(trials) != self._trials_told:
            # a killed run wrote trials its last checkpoint does not know of: keep those before it
            kept = [t for t in trials if t.number < self._trials_told]
            optuna.delete_study(study_name=self.study_name, storage=storage)
            stored = self._new_study(storage)
            stored.add_trials(kept)
        return stored

    def on_fit_start(self) -> None:
        """Open the study's file before the first episode (a storage problem fails before any search)
        and load the trials of a resumed run into the sampler's in-memory study."""
        self.stored_study = self._open_stored_study()
        if self.stored_study is None and self._trials_told:
            raise ConfigError("model.init_args.storage", "a search whose study has no file (storage: null) cannot be resumed")
        self.study = self._new_study()
        if self.stored_study is not None:
            self.study.add_trials(self.stored_study.get_trials(deepcopy=False))

    # ---- acting ----

    def initial_state(self) -> TrialStep:
        trial = self.study.ask()
        self.pending.append(trial)
        return TrialStep(trial)

    def act(self, observation: Any, state: TrialStep) -> tuple[int, TrialStep]:
        if isinstance(observation, dict) and "action_mask" in observation and not np.any(observation["action_mask"]):
            return 0, state  # a finished episode still shown to a batch: nothing to suggest, the action is dropped
        allowed = self.allowed_actions(observation)
        if len(allowed) == len(self._all_actions):
            name = f"step{state.step}"
        else:
            mask = np.zeros(len(self._all_actions), dtype=np.int8)
            mask[allowed] = 1
            name = f"step{state.step}:" + "".join(map(str, mask))
        action = state.trial.suggest_categorical(name, [int(a) for a in allowed])
        state.step += 1
        return int(action), state

    # ---- learning ----

    def learn(self, episodes: Sequence[Episode]) -> None:
        for episode in episodes:
            trial = self.pending.popleft()
            trial.set_user_attr("episode", episode.index)
            trial.set_user_attr("actions", list(episode.actions))
            values = self._values(episode)
            if values is None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, values)
        if self.stored_study is not None:
            self.stored_study.add_trials(self.study.get_trials(deepcopy=False)[self._trials_told :])
        self._trials_told += len(episodes)

    def _values(self, episode: Episode) -> list[float] | None:
        """The objectives of a finished episode; `None` for a failed child (it has no metrics)."""
        if "error" in episode.info and len(self.objectives) > 1:
            return None
        values = []
        for key in self.objectives:
            value = episode.total_reward if key == "reward" else episode.info.get(key)
            if not isinstance(value, (int, float, np.integer, np.floating)):
                return None
            values.append(float(value))
        return values

    def pareto_front(self) -> list[dict[str, Any]]:
        """The study's best trials (its Pareto front with several objectives): episode, actions, values."""
        return [
            {"episode": t.user_attrs.get("episode"), "actions": t.user_attrs.get("actions"), **dict(zip(self.objectives, t.values))}
            for t in self.study.best_trials
        ]

    def on_train_end(self) -> None:
        if len(self.objectives) > 1 and self._trainer is not None and self._trainer.is_global_zero:
            run_dir = Path(self._trainer.log_dir or self._trainer.default_root_dir)
            front = sorted(self.pareto_front(), key=lambda point: point["episode"])
            (run_dir / PARETO_FILE).write_text(json.dumps(front, indent=1) + "\n", encoding="utf-8")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the sampler's generator and caches: pickling it is how Optuna resumes a sampler exactly
        checkpoint["optuna"] = {
            "trials_told": self._trials_told,
            "sampler": torch.frombuffer(bytearray(pickle.dumps(self.sampler)), dtype=torch.uint8),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("optuna")
        if state is None:
            return
        self._trials_told = int(state["trials_told"])
        self.sampler = pickle.loads(state["sampler"].numpy().tobytes())
        self.pending.clear()
