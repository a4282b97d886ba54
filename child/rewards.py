"""Reward functions: small callables chosen by `class_path` in the env config.

Each maps a child's measured metrics to the reward and the parts it is made of; every part
goes into the env step's `info` (under `reward/…`). Costs name a metric of the evaluation:
`flops`, `params`, `size_bytes`, `latency_ms` (it needs `training.latency_batch_size`), or the
bit-width costs `size_bits` (Σ params × bits) and `bitops` (Σ MACs × weight bits × activation bits).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Literal

from nasprune.config import ConfigError, NonNegativeFloat, NonPositiveFloat, PositiveFloat, UnitRatio

# Costs the CLI accepts (jsonargparse checks the Literal); a metric the evaluation measures
Cost = Literal["flops", "params", "size_bytes", "latency_ms", "size_bits", "bitops"]


class Reward(ABC):
    """Base class: `reward(metrics)` returns `{"reward": r, **parts}`.

    `metrics_needed` names the evaluation metrics the reward reads, so an env can refuse a
    reward on a metric it does not measure before any training.
    """

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy",)

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

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, cost: Cost = "flops", cost_ref: PositiveFloat | None = None) -> None:
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.cost = cost
        self.cost_ref = None if cost_ref is None else float(cost_ref)

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy", self.cost)

    def with_reference(self, reference: Mapping[str, float]) -> LinearReward:
        if self.cost_ref is not None or self.cost not in reference:
            return self
        return LinearReward(self.alpha, self.beta, self.cost, float(reference[self.cost]))

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        if self.cost_ref is None:
            raise RuntimeError("LinearReward.cost_ref is unset: give it in the config or call with_reference() first")
        accuracy_term = self.alpha * metrics["accuracy"]
        cost_term = self.beta * metrics[self.cost] / self.cost_ref
        return {
            "reward": accuracy_term - cost_term,
            "reward/accuracy_term": accuracy_term,
            "reward/cost_term": cost_term,
            "reward/cost_ref": self.cost_ref,
        }


class MnasNetReward(Reward):
    """MnasNet's soft constraint (Tan et al. 2019): accuracy · (cost/target)^w, w < 0 (−0.07 in the paper).

    Below the target the factor is a bonus above 1, above it a penalty; w sets the exchange
    rate (w = −0.07: halving the cost is worth about 5% relative accuracy).
    """

    def __init__(self, target: PositiveFloat | None = None, weight: NonPositiveFloat = -0.07, cost: Cost = "flops") -> None:
        if target is None:
            raise ConfigError("target", "is required")
        self.target = float(target)
        self.weight = float(weight)
        self.cost = cost

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy", self.cost)

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        factor = (metrics[self.cost] / self.target) ** self.weight
        return {"reward": metrics["accuracy"] * factor, "reward/cost_factor": factor, "reward/target": self.target}


class AMCReward(Reward):
    """AMC's R_FLOPs (He et al. 2018): −error · log(FLOPs), natural log, error = 1 − accuracy.

    Not normalised: it favours low error first and fewer FLOPs second; `scale` divides it
    (e.g. by a typical |reward|) without changing which design is better.
    """

    def __init__(self, cost: Cost = "flops", scale: PositiveFloat = 1.0) -> None:
        self.cost = cost
        self.scale = float(scale)

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy", self.cost)

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        error = 1.0 - metrics["accuracy"]
        log_cost = math.log(metrics[self.cost])
        return {"reward": -error * log_cost / self.scale, "reward/error": error, "reward/log_cost": log_cost}


class HardBudgetReward(Reward):
    """A hard budget: α·accuracy when cost ≤ budget, else the configured `penalty`."""

    def __init__(self, budget: PositiveFloat | None = None, cost: Cost = "flops", penalty: float = -1.0, alpha: float = 1.0) -> None:
        if budget is None:
            raise ConfigError("budget", "is required")
        self.budget = float(budget)
        self.cost = cost
        self.penalty = float(penalty)
        self.alpha = float(alpha)

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy", self.cost)

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        over = metrics[self.cost] > self.budget
        reward = self.penalty if over else self.alpha * metrics["accuracy"]
        return {"reward": reward, "reward/over_budget": float(over), "reward/budget": self.budget}


class TargetWindowReward(Reward):
    """A cost target with a tolerance window: α·accuracy − slope · (relative distance outside the window).

    Within `target · (1 ± tolerance)` the reward is α·accuracy alone, so designs of the same cost are
    ranked by accuracy only (what a search for the best allocation at a fixed budget asks). Outside
    it the reward falls linearly with the relative distance to the window's nearer edge, on either
    side: unlike a hard budget (flat penalty, no gradient to follow) it tells the controller which way
    the target lies, and unlike a one-sided budget it does not reward undershooting it.
    """

    def __init__(
        self,
        target: PositiveFloat | None = None,
        tolerance: UnitRatio = 0.05,
        slope: NonNegativeFloat = 1.0,
        cost: Cost = "flops",
        alpha: float = 1.0,
    ) -> None:
        if target is None:
            raise ConfigError("target", "is required")
        self.target = float(target)
        self.tolerance = float(tolerance)
        self.slope = float(slope)
        self.cost = cost
        self.alpha = float(alpha)

    @property
    def metrics_needed(self) -> tuple[str, ...]:
        return ("accuracy", self.cost)

    @property
    def window(self) -> tuple[float, float]:
        """The inclusive cost bounds within which accuracy alone counts (the NasPrune env's `mask_budget` keeps to them)."""
        return self.target * (1.0 - self.tolerance), self.target * (1.0 + self.tolerance)

    def __call__(self, metrics: Mapping[str, float]) -> dict[str, float]:
        cost = metrics[self.cost]
        low, high = self.window
        outside = max(0.0, low - cost, cost - high) / self.target  # edges compared directly: inclusive, no rounding
        accuracy_term = self.alpha * metrics["accuracy"]
        return {
            "reward": accuracy_term - self.slope * outside,
            "reward/accuracy_term": accuracy_term,
            "reward/relative_cost": cost / self.target - 1.0,
            "reward/outside_window": outside,
            "reward/target": self.target,
        }
