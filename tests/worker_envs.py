"""Envs for the parallel backends' tests (dying workers, costly designs); `gymnasium.make("worker_envs:Crashing-v0")` imports this."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from toy_envs import TargetSequenceEnv

from nasprune.decisions import DecisionCopies
from nasprune.envs.cache import EvaluationCache


class CrashingEnv(TargetSequenceEnv):
    """TargetSequence whose process exits on the last step of an episode reset with a chosen seed.

    Seeds in `crash_once` crash the first time only (a file in `marker_dir` remembers it, across
    processes); seeds in `crash_always` crash every time. Never run it in the test process itself.
    """

    failure_reward = -1.0

    def __init__(self, crash_once: tuple[int, ...] = (), crash_always: tuple[int, ...] = (), marker_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash_once, self.crash_always = set(crash_once), set(crash_always)
        self.marker_dir = marker_dir
        self._seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        self._seed = seed
        return super().reset(seed=seed, options=options)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if len(self._actions) == len(self.target) - 1:
            marker = Path(self.marker_dir or ".") / f"crashed-{self._seed}"
            if self._seed in self.crash_always or (self._seed in self.crash_once and not marker.exists()):
                marker.touch()
                os._exit(3)
        return super().step(action)


gym.register(id="Crashing-v0", entry_point=CrashingEnv)


class ReportWorkerEnv(gym.Env):
    """One step; its info names the process that played it and that process's torch threads."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        import torch

        return 1, 0.0, True, False, {"pid": os.getpid(), "threads": torch.get_num_threads()}


gym.register(id="ReportWorker-v0", entry_point=ReportWorkerEnv)


class CostlyDesignsEnv(DecisionCopies, gym.Env):
    """Three decisions of three choices; the last step "trains" the design for a time its first
    decision sets (10, 50 or 90 ms: children of very different costs) and caches the result by
    design, as `NasPruneEnv` does. Its reward depends on the design and on the episode's seed; its
    decision copies tell the queue each design's cost (its time)."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Dict({"step": gym.spaces.Discrete(4), "action_mask": gym.spaces.MultiBinary(3)})
    action_space = gym.spaces.Discrete(3)

    def __init__(self, seconds: tuple[float, ...] = (0.01, 0.05, 0.09)) -> None:
        self.seconds = seconds
        self.cache = EvaluationCache(lambda record: record.get("design"))
        self._actions: list[int] = []

    def _observation(self) -> dict[str, Any]:
        return {"step": len(self._actions), "action_mask": np.ones(3, dtype=np.int8)}

    def remember(self, records: Iterable[Mapping[str, Any]]) -> int:
        return self.cache.remember(records)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict]:
        self._actions.append(int(action))
        if len(self._actions) < 3:
            return self._observation(), 0.0, False, False, {}
        design = "".join(map(str, self._actions))
        noise = float(self.np_random.random())
        cached = self.cache.lookup(design)
        if cached is not None:
            return self._observation(), float(cached["reward"]), True, False, cached
        if self.deciding:  # the queue is told the cost: the costliest designs go first
            reward, info = self.pending(design, self.seconds[self._actions[0]])
            return self._observation(), reward, True, False, info
        time.sleep(self.seconds[self._actions[0]])
        info = {"design": design, "reward": sum(self._actions) + noise}
        self.cache.add(design, info)
        return self._observation(), float(info["reward"]), True, False, info


gym.register(id="CostlyDesigns-v0", entry_point=CostlyDesignsEnv)
