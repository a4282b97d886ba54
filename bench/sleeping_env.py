"""Children that sleep instead of training: the scheduling of a cluster-sized search, without its cores.

`Sleeping-v0` has the digits search's shape (9 decisions of 5 choices, one reward at the end);
its last step sleeps for a child time drawn, with the episode's own generator, from `seconds`
(measured digits child times) times `scale`, and rewards the design. It is stepped, as any env
without decision copies: the lockstep rounds. `QueuedSleeping-v0` is the same env with decision
copies: the evaluation queue. Both draw the same times for the same episode seeds.

With `cost_noise: σ` the decision copies tell the queue each child's cost ahead (`evaluation_cost`),
as an env that estimates it would (from a child's FLOPs, say): its time × exp(σ·z), z a standard
normal drawn with the episode's generator — an estimate off by a factor of e^σ typically.
`gymnasium.make("sleeping_env:Sleeping-v0")` imports this module (Ray actors need `bench/` on
their `PYTHONPATH`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nasprune.decisions import DecisionCopies

STEPS, CHOICES = 9, 5


class SleepingEnv(gym.Env):
    """`STEPS` decisions; the last one sleeps for `scale` × a time drawn from `seconds`."""

    metadata = {"render_modes": []}

    def __init__(self, seconds: Sequence[float] = (1.0,), scale: float = 1.0, cost_noise: float | None = None) -> None:
        self.seconds, self.scale, self.cost_noise = np.asarray(seconds, dtype=np.float64), float(scale), cost_noise
        self.action_space = spaces.Discrete(CHOICES)
        self.observation_space = spaces.Dict({"step": spaces.Discrete(STEPS + 1), "action_mask": spaces.MultiBinary(CHOICES)})
        self._actions: list[int] = []

    def _observation(self) -> dict[str, Any]:
        return {"step": len(self._actions), "action_mask": np.ones(CHOICES, dtype=np.int8)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._actions = []
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self._actions.append(int(action))
        if len(self._actions) < STEPS:
            return self._observation(), 0.0, False, False, {}
        return self._observation(), *self._last_step()

    def _child_seconds(self) -> tuple[float, float]:
        """The child's time and its estimate, drawn from the episode's generator (a replay draws the same)."""
        seconds = self.scale * float(self.np_random.choice(self.seconds))
        return seconds, seconds * float(np.exp((self.cost_noise or 0.0) * self.np_random.standard_normal()))

    def _last_step(self) -> tuple[float, bool, bool, dict[str, Any]]:
        seconds, _ = self._child_seconds()
        time.sleep(seconds)
        reward = float(np.mean(np.asarray(self._actions) == 2))  # the all-2 design is the optimum
        return reward, True, False, {"reward": reward, "seconds/evaluate": seconds}


class QueuedSleepingEnv(DecisionCopies, SleepingEnv):
    """`SleepingEnv` with decision copies: its episodes are sampled first, then evaluated from the queue."""

    def _last_step(self) -> tuple[float, bool, bool, dict[str, Any]]:
        if self.deciding:
            _, estimate = self._child_seconds()
            reward, info = self.pending(None, estimate if self.cost_noise is not None else None)
            return reward, True, False, info
        return super()._last_step()


gym.register(id="Sleeping-v0", entry_point=SleepingEnv)
gym.register(id="QueuedSleeping-v0", entry_point=QueuedSleepingEnv)
