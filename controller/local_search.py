"""Local search over an episode's decisions (White, Nolen, Ram & Yu 2020, "Local search is state
of the art for neural architecture search benchmarks").

    current ← the best of `initial_designs` random designs
    repeat:
        evaluate the neighbours of current (one decision changed, to another allowed choice)
        in random order; the first that beats current becomes current (first improvement)
        no neighbour beats it (a local optimum): current ← a new random design

A design already evaluated (a neighbour shared by two designs, the way back to a former current)
is a cache hit: it is looked up, not played again. The masks a neighbour's changed decision must
respect are the ones the env showed while playing its parent: the decision at step t is changed to
another choice of the mask seen at t. Decisions after the changed one are kept where the mask
they meet allows them, otherwise drawn at random among the allowed ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from gymnasium import spaces

from nasprune.config import PositiveCount
from nasprune.controller.baselines import GradientFreeStrategy
from nasprune.controller.design_tree import Design, DesignTree
from nasprune.controller.episode import Episode


@dataclass(frozen=True)
class Plan:
    """What an episode plays: `design` step by step (random where it is `None` or not allowed)."""

    kind: Literal["initial", "neighbour", "restart"]
    design: Design | None = None
    step: int = 0


class LocalSearch(GradientFreeStrategy):
    """First-improvement local search with random restarts, as White et al. ran it on NAS-Bench-201.

    Episodes played in one batch (`data.episodes_per_update`) are the next neighbours in the
    order drawn; `episodes_per_update: 1` (the default of the recipe in the docs) is the
    sequential algorithm.
    """

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        initial_designs: PositiveCount = 10,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            observation_space: the env's observation space (linked from the data module by the CLI).
            action_space: the env's action space; must be `Discrete`.
            initial_designs: random designs evaluated before the first move; the search starts
                from their best (White et al.: 10).
            seed: seed of the strategy's generator; by default torch's initial seed (`seed_everything`).
        """
        super().__init__(observation_space, action_space, seed)
        self.save_hyperparameters(ignore=["observation_space", "action_space"])
        self.known = DesignTree()  # every design evaluated, its reward, the masks seen: the cache
        self.current: Design | None = None
        self.current_reward = float("-inf")
        self.neighbours: list[Design] = []  # current's neighbours not tried yet, popped from the end
        self.initial_left = initial_designs  # random designs still to plan
        self.planned: deque[Plan] = deque()  # plans handed out, in the order their episodes come back

    # ---- planning and acting ----

    def initial_state(self) -> Plan:
        plan = self._next_plan()
        self.planned.append(plan)
        return plan

    def _next_plan(self) -> Plan:
        if self.initial_left > 0:
            self.initial_left -= 1
            return Plan("initial")
        if self.current is None:  # the initial designs of this batch are still being played
            return Plan("initial")
        in_flight = {plan.design for plan in self.planned}
        while self.neighbours:
            design = self.neighbours.pop()
            if design in self.known:  # a cache hit: looked up, not played
                if self.known.rewards[design] > self.current_reward:
                    self._move_to(design, self.known.rewards[design])
            elif design not in in_flight:
                return Plan("neighbour", design)
        return Plan("restart")  # a local optimum: every neighbour is known and none is better

    def act(self, observation: Any, state: Plan) -> tuple[int, Plan]:
        allowed = self.allowed_actions(observation)
        t, design = state.step, state.design
        if design is not None and t < len(design) and design[t] in allowed:
            action = design[t]
        else:
            action = int(self.rng.choice(allowed))
        return int(action), replace(state, step=t + 1)

    # ---- learning ----

    def learn(self, episodes: Sequence[Episode]) -> None:
        for episode in episodes:
            plan = self.planned.popleft()
            design, reward = tuple(episode.actions), episode.total_reward
            self.known.add(design, reward, map(self.allowed_actions, episode.observations))
            if plan.kind == "restart" or reward > self.current_reward:
                self._move_to(design, reward)

    def _move_to(self, design: Design, reward: float) -> None:
        """Make `design` current; its neighbours, in random order, are the next to try."""
        self.current, self.current_reward = design, reward
        neighbours = [
            design[:t] + (a,) + design[t + 1 :]
            for t in range(len(design))
            for a in self.known.masks.get(design[:t], ())
            if a != design[t]
        ]
        self.neighbours = [neighbours[i] for i in self.rng.permutation(len(neighbours))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["local_search"] = {
            "known": self.known.state_dict(),
            "current": None if self.current is None else list(self.current),
            "current_reward": self.current_reward,
            "neighbours": [list(d) for d in self.neighbours],
            "initial_left": self.initial_left,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("local_search")
        if state is None:
            return
        self.known.load_state_dict(state["known"])
        self.current = None if state["current"] is None else tuple(state["current"])
        self.current_reward = float(state["current_reward"])
        self.neighbours = [tuple(d) for d in state["neighbours"]]
        self.initial_left = int(state["initial_left"])
        self.planned.clear()
