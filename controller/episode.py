"""The `Episode` type: what one played episode holds, from its observations to its history record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from nasprune.records import Record, episode_record


@dataclass
class Episode:
    """One finished episode: the observation before each action, the actions, the rewards."""

    index: int
    observations: list[Any]
    actions: list[int]
    rewards: list[float]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    worker: int | None = None  # the parallel worker that played it; None when played in this process
    update: int = 0  # the (0-based) controller update that learns from it
    staleness: int = 0  # updates between the policy that sampled it and the one that learns from it (`data.max_staleness`)
    log_likelihood: float | None = None  # log π(actions) of the policy that sampled it, kept for a stale episode
    weight: float = 1.0  # its importance weight π_now / π_then (truncated) in the update; 1 when fresh

    @property
    def total_reward(self) -> float:
        """The undiscounted return."""
        return float(sum(self.rewards))

    def __len__(self) -> int:
        return len(self.actions)

    def metrics(self) -> dict[str, float]:
        """The numeric scalars of the final step's `info` (accuracy, flops, reward parts, …)."""
        return {
            key: float(value)
            for key, value in self.info.items()
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        }

    @cached_property
    def record(self) -> Record:
        """Its history line, built once (the history, the exporter and the tables all read this one)."""
        return episode_record(self)

    @cached_property
    def line(self) -> str:
        """Its history line as JSON text, serialised once (the history file and its digest share it)."""
        return json.dumps(self.record)
