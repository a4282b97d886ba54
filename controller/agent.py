"""What plays episodes: the agent protocols the rollout loop calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Agent(Protocol):
    """Whatever plays episodes: a recurrent state in, an action and the next state out."""

    def initial_state(self) -> Any: ...

    def act(self, observation: Any, state: Any) -> tuple[int, Any]: ...


class BatchAgent(Agent, Protocol):
    """An agent that can also act for several episodes at once (one batched forward per step)."""

    def initial_states(self, n: int) -> Any: ...

    def act_batch(self, observations: Sequence[Any], states: Any) -> tuple[list[int], Any]: ...
