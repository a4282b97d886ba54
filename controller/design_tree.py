"""The designs a search has evaluated, as a prefix tree of its decisions.

A design is the action sequence of a finished episode. The tree keeps each evaluated design's
reward (a cache: a design is evaluated once), the mask the env showed after each visited prefix,
and which prefixes are *exhausted*: every design that continues them has been evaluated. A
prefix is exhausted when each action its mask allows leads to an exhausted prefix (a complete
design is exhausted by itself), so `unexplored` knows, at any step, which actions can still lead
to a design not seen before — sampling without replacement, one decision at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Design = tuple[int, ...]


class DesignTree:
    """Evaluated designs (with rewards), observed masks per prefix, exhausted prefixes."""

    def __init__(self) -> None:
        self.rewards: dict[Design, float] = {}
        self.masks: dict[Design, tuple[int, ...]] = {}  # prefix → the actions the env allowed after it
        self.exhausted: set[Design] = set()

    def __len__(self) -> int:
        return len(self.rewards)

    def __contains__(self, design: object) -> bool:
        return design in self.rewards

    def add(self, actions: Sequence[int], reward: float, allowed: Iterable[Sequence[int]]) -> None:
        """An evaluated design, its reward, and the allowed actions the env showed at each of its steps."""
        design = tuple(int(a) for a in actions)
        for t, choices in enumerate(allowed):
            self.masks.setdefault(design[:t], tuple(int(a) for a in choices))
        self.rewards[design] = float(reward)
        self.exhausted.add(design)
        for t in reversed(range(len(design))):
            prefix = design[:t]
            if prefix in self.exhausted or not all(prefix + (a,) in self.exhausted for a in self.masks.get(prefix, ())):
                break
            self.exhausted.add(prefix)

    def unexplored(self, prefix: Design, allowed: np.ndarray) -> np.ndarray:
        """Of the `allowed` actions after `prefix`, those that lead to a design not evaluated yet
        (all of `allowed` if none does: the whole subtree is known)."""
        fresh = [a for a in allowed if prefix + (int(a),) not in self.exhausted]
        return np.asarray(fresh, dtype=allowed.dtype) if fresh else allowed

    def state_dict(self) -> dict[str, Any]:
        """Plain lists (checkpoints load with `weights_only=True`); exhausted prefixes are recomputed."""
        return {"rewards": [[list(d), r] for d, r in self.rewards.items()], "masks": [[list(p), list(m)] for p, m in self.masks.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.clear()
        self.exhausted.clear()
        self.masks = {tuple(p): tuple(m) for p, m in state["masks"]}
        for design, reward in state["rewards"]:
            self.add(design, reward, ())
