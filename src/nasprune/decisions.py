"""Sample, then evaluate: what an env offers so that a controller can sample designs before evaluating any.

A NAS env's decisions do not depend on evaluations: every observation, action mask and reward
before the last step is a function of the reset seed and the actions so far, and only the last
step evaluates the design. Such an env opts in with one method, `decision_env()`: a cheap copy
of itself that plays the same decision steps and, at the last one, ends the episode *without*
evaluating it — reward 0 and `info[PENDING] = True`, plus `info[EVALUATION_KEY]` (the key its
evaluation cache keeps the design under) when it has a cache, and optionally
`info[EVALUATION_COST]`: an estimate of what evaluating it costs (any unit, e.g. the child's
FLOPs; compared only with the costs of other designs of the same env), which lets a work queue
start the costliest evaluations of an update first. A design the cache already holds is answered
at once, as a real last step.

The evaluation itself needs no new method: the env replays the episode — `reset(seed=...)`, then
`step` through its actions — and the last step's reward and info are the episode's. So a
controller can sample an update's designs side by side on decision copies and hand their
evaluations to any free worker, in any order, and get what stepping the env would have given.

This module is the one both sides import: envs (`DecisionCopies`) and the controller (the keys).
"""

from __future__ import annotations

import copy
from typing import Any, Self

PENDING = "pending_evaluation"  # in the last step's info of a decision copy: the design is not evaluated yet
EVALUATION_KEY = "evaluation_key"  # with it: the cache key of the design (episodes with one key are evaluated once)
EVALUATION_COST = "evaluation_cost"  # optionally with it: the evaluation's estimated cost (the costliest start first)


class DecisionCopies:
    """Mixin for an env whose last step evaluates: `decision_env()` and the pending answer.

    The copy is shallow: it shares the env's settings, data and evaluation cache (so it answers
    designs evaluated by the env, or remembered by it, at once), and has its own episode state
    (every episode starts with a `reset` that replaces it). It must never evaluate: the env's
    last step asks `self.deciding` first and returns `self.pending(key)` instead.
    """

    deciding: bool = False

    def decision_env(self) -> Self:
        """A copy that plays the decisions and ends each episode with its evaluation pending."""
        decisions = copy.copy(self)
        decisions.deciding = True
        return decisions

    def pending(self, key: str | None, cost: float | None = None) -> tuple[float, dict[str, Any]]:
        """The last step's reward and info of a decision copy: the evaluation is left to a worker
        (`cost`: its estimated cost, when the env can tell before evaluating)."""
        info: dict[str, Any] = {PENDING: True}
        if key is not None:
            info[EVALUATION_KEY] = key
        if cost is not None:
            info[EVALUATION_COST] = float(cost)
        return 0.0, info
