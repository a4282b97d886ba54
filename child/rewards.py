"""Reward functions: small callables chosen by `class_path` in the env config.

Each maps a child's measured metrics to the reward and the parts it is made of; every part
goes into the env step's `info` (under `reward/…`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from nasprune.config import ConfigError


class Reward(ABC):
    """Base class: `reward(metrics)` returns `{"reward": r, **parts}`."""

    def with_reference(self, reference: Mapping[str, float]) -> Reward:
        """Fill in cost references the user left unset (the env passes its largest design's costs)."""
        return self

    @abstractmethod
    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]: ...


class LinearReward(Reward):
    """E(a) = α·accuracy − β·cost/cost_ref (accuracy in [0, 1]; cost e.g. FLOPs of the pruned child).

    `cost_ref=None` means the cost of the largest design in the search space, so the cost term
    stays in [0, β] whatever the data or space.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, cost: str = "flops", cost_ref: float | None = None) -> None:
        if cost not in ("flops", "params"):
            raise ConfigError("cost", f"unknown cost {cost!r}; allowed: flops, params")
        if cost_ref is not None and cost_ref <= 0:
            raise ConfigError("cost_ref", f"must be positive, got {cost_ref!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.cost = cost
        self.cost_ref = None if cost_ref is None else float(cost_ref)

    def with_reference(self, reference: Mapping[str, float]) -> LinearReward:
        if self.cost_ref is not None:
            return self
        return LinearReward(self.alpha, self.beta, self.cost, float(reference[self.cost]))

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        if self.cost_ref is None:
            raise RuntimeError("LinearReward.cost_ref is unset: call with_reference() first")
        accuracy_term = self.alpha * metrics["accuracy"]
        cost_term = self.beta * metrics[self.cost] / self.cost_ref
        return {
            "reward": accuracy_term - cost_term,
            "reward/accuracy_term": accuracy_term,
            "reward/cost_term": cost_term,
            "reward/cost_ref": self.cost_ref,
        }
