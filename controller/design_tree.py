"""The designs a search has evaluated, as a prefix tree of its decisions.

A design is the action sequence of a finished episode. The tree keeps each evaluated design's
reward (a cache: a design is evaluated once), the mask the env showed after each visited prefix,
and which prefixes are *exhausted*: every design that continues them has been evaluated. A
prefix is exhausted when each action its mask allows leads to an exhausted prefix (a complete
design is exhausted by itself), so `unexplored` knows, at any step, which actions can still lead
to a design not seen before — sampling without replacement, one decision at a time. A prefix
whose mask was never seen is not exhausted (it may have continuations not tried).
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
        self.closed: dict[Design, set[int]] = {}  # prefix → the actions after it whose continuations are all evaluated
        self.lengths: set[int] = set()

    @property
    def length(self) -> int | None:
        """The number of decisions of every evaluated design, if they all have the same (NAS envs do)."""
        return next(iter(self.lengths)) if len(self.lengths) == 1 else None

    def __len__(self) -> int:
        return len(self.rewards)

    def __contains__(self, design: object) -> bool:
        return design in self.rewards

    def add(self, actions: Sequence[int], reward: float, allowed: Iterable[Iterable[int]]) -> None:
        """An evaluated design, its reward, and the allowed actions the env showed at each of its steps."""
        design = tuple(int(a) for a in actions)
        for t, choices in enumerate(allowed):
            self.masks.setdefault(design[:t], tuple(int(a) for a in choices))
        self.rewards[design] = float(reward)
        self.lengths.add(len(design))
        for t in reversed(range(len(design))):  # close the path upwards while every sibling is closed
            prefix, closed = design[:t], self.closed.setdefault(design[:t], set())
            closed.add(design[t])
            if not closed.issuperset(self.masks.get(prefix, (None,))):
                break

    def unexplored(self, prefix: Design, mask: np.ndarray) -> np.ndarray:
        """`mask` (the env's 0/1 mask after `prefix`) less the actions whose every continuation is
        evaluated — unchanged if that would leave nothing: the whole subtree is known."""
        closed = self.closed.get(prefix)
        if not closed:
            return mask
        fresh = mask.copy()
        fresh[list(closed)] = 0
        return fresh if fresh.any() else mask

    def state_dict(self) -> dict[str, Any]:
        """Plain lists (checkpoints load with `weights_only=True`); closed prefixes are recomputed."""
        return {"rewards": [[list(d), r] for d, r in self.rewards.items()], "masks": [[list(p), list(m)] for p, m in self.masks.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.clear()
        self.closed.clear()
        self.lengths.clear()
        self.masks = {tuple(p): tuple(m) for p, m in state["masks"]}
        for design, reward in state["rewards"]:
            self.add(design, reward, ())
