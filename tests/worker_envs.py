"""Envs whose worker process dies, for the parallel backends' tests; `gymnasium.make("worker_envs:Crashing-v0")` imports this."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
from toy_envs import TargetSequenceEnv


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
