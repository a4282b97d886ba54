"""Small deterministic envs for controller tests; `gymnasium.make("toy_envs:TargetSequence-v0")` imports this."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class TargetSequenceEnv(gym.Env):
    """Pick one of `n_actions` at each of `len(target)` steps; the final reward is the share of matches.

    Its unique optimum is `target` (reward 1.0). With `masked=True` the observation carries an
    action mask that forbids action 0 everywhere, and picking it ends the episode with −1.
    """

    def __init__(self, target: tuple[int, ...] = (2, 0, 1, 2), n_actions: int = 3, masked: bool = False) -> None:
        self.target = tuple(target)
        self.masked = masked
        self.action_space = spaces.Discrete(n_actions)
        step_space = spaces.Discrete(len(self.target) + 1)
        if masked:
            self.observation_space = spaces.Dict({"step": step_space, "action_mask": spaces.MultiBinary(n_actions)})
        else:
            self.observation_space = step_space
        self._actions: list[int] = []

    def _obs(self) -> Any:
        step = len(self._actions)
        if not self.masked:
            return step
        mask = np.ones(self.action_space.n, dtype=np.int8)
        mask[0] = 0
        return {"step": step, "action_mask": mask}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._obs(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        self._actions.append(int(action))
        if self.masked and action == 0:
            return self._obs(), -1.0, True, False, {"error_kind": "invalid_action"}
        if len(self._actions) < len(self.target):
            return self._obs(), 0.0, False, False, {}
        matches = sum(a == t for a, t in zip(self._actions, self.target))
        return self._obs(), matches / len(self.target), True, False, {"matches": matches}


class ChainMaskEnv(gym.Env):
    """Masks that vary with the past: no action may repeat the previous one, and action 0 may not
    start. A masked action ends the episode with −1; the reward is the share of steps matching
    `target` (itself allowed), the only design that scores 1.0."""

    def __init__(self, target: tuple[int, ...] = (3, 1, 0, 2, 3), n_actions: int = 4) -> None:
        self.target = tuple(target)
        self.action_space = spaces.Discrete(n_actions)
        self.observation_space = spaces.Dict(
            {"step": spaces.Discrete(len(self.target) + 1), "prev_action": spaces.Discrete(n_actions + 1), "action_mask": spaces.MultiBinary(n_actions)}
        )
        self._actions: list[int] = []

    def _mask(self) -> np.ndarray:
        mask = np.ones(self.action_space.n, dtype=np.int8)
        mask[self._actions[-1] if self._actions else 0] = 0
        return mask

    def _obs(self) -> dict[str, Any]:
        prev = self._actions[-1] if self._actions else int(self.action_space.n)
        return {"step": len(self._actions), "prev_action": prev, "action_mask": self._mask()}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._obs(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        allowed = self._mask()[int(action)]
        self._actions.append(int(action))
        if not allowed:
            return self._obs(), -1.0, True, False, {"error": "masked action", "error_kind": "invalid_action"}
        if len(self._actions) < len(self.target):
            return self._obs(), 0.0, False, False, {}
        matches = sum(a == t for a, t in zip(self._actions, self.target))
        return self._obs(), matches / len(self.target), True, False, {"matches": matches, "cost": float(sum(self._actions))}


gym.register(id="TargetSequence-v0", entry_point=TargetSequenceEnv)
gym.register(id="ChainMask-v0", entry_point=ChainMaskEnv)
