"""A tiny env whose worker process can be made to die, for the dying-worker tests.

Importable by `async` workers (spawned processes get the parent's `sys.path`, which holds
`tests/`): `fault_envs:DyingBandit-v0`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nasprune.decisions import DecisionCopies


class DyingBandit(gym.Env):
    """Two decisions of four choices; the return is a function of the actions and the reset seed.

    Its process SIGKILLs itself at the last step of the episode reset with `die_on_seed`, as the
    out-of-memory killer would during a child's training: once when `marker` is given (the file
    records that it died), at every such episode otherwise.
    """

    metadata = {"render_modes": []}

    def __init__(self, die_on_seed: int | None = None, marker: str | None = None) -> None:
        self.die_on_seed = die_on_seed
        self.marker = marker
        self.action_space = spaces.Discrete(4)
        self.observation_space = spaces.Dict({"step": spaces.Discrete(3), "action_mask": spaces.MultiBinary(4)})
        self._seed: int | None = None
        self._actions: list[int] = []

    def _observation(self) -> dict[str, Any]:
        return {"step": len(self._actions), "action_mask": np.ones(4, dtype=np.int8)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._seed, self._actions = seed, []
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self._actions.append(int(action))
        if len(self._actions) < 2:
            return self._observation(), 0.0, False, False, {}
        if self._seed == self.die_on_seed and not (self.marker and Path(self.marker).exists()):
            if self.marker:
                Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        reward = float(self._actions[0] * 4 + self._actions[1]) + float(self.np_random.random())
        return self._observation(), reward, True, False, {"final_reward": reward}


gym.register("DyingBandit-v0", entry_point=DyingBandit)


class QueuedDyingBandit(DecisionCopies, DyingBandit):
    """`DyingBandit` with decision copies: its episodes are sampled first and evaluated from the queue."""

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self.deciding and len(self._actions) == 1:
            self._actions.append(int(action))
            reward, info = self.pending(None)
            return self._observation(), reward, True, False, info
        return super().step(action)


gym.register("QueuedDyingBandit-v0", entry_point=QueuedDyingBandit)
