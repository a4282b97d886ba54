"""The strategies a controller has to beat, behind the same interface: random search and ageing evolution.

Both run through the same CLI, env, budget, logging, `history.jsonl` and `best.json` as the
REINFORCE controller, so a comparison changes one config line (`model.class_path`). Neither
learns by gradient: they have no optimizer, and their `training_step` only records the batch.
Their randomness comes from one NumPy generator per strategy, seeded by `seed` or, by default,
by `seed_everything` (torch's initial seed): the same seed gives the same run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from nasprune.config import ConfigError, PositiveCount
from nasprune.controller.episode import Episode
from nasprune.controller.strategy import SearchStrategy


class GradientFreeStrategy(SearchStrategy):
    """What random search and evolution share: a seeded generator, no optimizer, no prefetch."""

    def __init__(
        self, observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None, seed: int | None = None
    ) -> None:
        super().__init__(observation_space, action_space)
        self.rng = np.random.default_rng(torch.initial_seed() if seed is None else seed)
        self._all_actions = np.arange(int(self.action_space.n))

    def allowed_actions(self, observation: Any) -> np.ndarray:
        """The actions the observation's `action_mask` allows (all of them without a mask).

        An all-zero mask (a finished episode still shown to a batch of agents) allows all.
        """
        if isinstance(observation, dict) and "action_mask" in observation:
            allowed = np.flatnonzero(np.asarray(observation["action_mask"]))
            if allowed.size:
                return allowed
        return self._all_actions

    def learn(self, episodes: Sequence[Episode]) -> None:
        """Take in a batch of finished episodes (nothing to learn for random search)."""

    def training_step(self, dataloader_iter: Iterator) -> None:
        episodes, _, _ = next(dataloader_iter)  # played now, after the previous batch was learnt
        self.learn(episodes)
        self.log_search(episodes)
        return None  # no loss: Lightning skips the backward pass, the step still counts

    def configure_optimizers(self) -> None:
        return None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["strategy_rng"] = self.rng.bit_generator.state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "strategy_rng" in checkpoint:
            self.rng.bit_generator.state = checkpoint["strategy_rng"]


class RandomSearch(GradientFreeStrategy):
    """Every decision uniform over the allowed actions (Li & Talwalkar 2019: a strong NAS baseline)."""

    def __init__(
        self, observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None, seed: int | None = None
    ) -> None:
        """
        Args:
            observation_space: the env's observation space (linked from the data module by the CLI).
            action_space: the env's action space; must be `Discrete`.
            seed: seed of the strategy's generator; by default torch's initial seed (`seed_everything`).
        """
        super().__init__(observation_space, action_space, seed)
        self.save_hyperparameters(ignore=["observation_space", "action_space"])

    def act(self, observation: Any, state: Any) -> tuple[int, Any]:
        return int(self.rng.choice(self.allowed_actions(observation))), state


@dataclass(frozen=True)
class Mutation:
    """An evolution episode's plan: copy `parent` except at `position`; no parent: sample at random."""

    parent: tuple[int, ...] | None = None
    position: int = -1
    step: int = 0


class RegularizedEvolution(GradientFreeStrategy):
    """Ageing evolution (Real et al. 2019) over the decisions of an episode.

    The first `population_size` episodes are random. After that, each episode samples
    `sample_size` members of the population, copies the decisions of the one with the highest
    reward, and changes exactly one of them (a random position, to another allowed action).
    Each finished episode joins the population and the oldest member leaves it. Episodes played
    in one batch (`data.episodes_per_update`) are bred from the same population.
    """

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        population_size: PositiveCount = 30,
        sample_size: PositiveCount = 10,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            observation_space: the env's observation space (linked from the data module by the CLI).
            action_space: the env's action space; must be `Discrete`.
            population_size: P, the members kept (the oldest leaves when a new one joins). 30 and
                `sample_size` 10 (NASLib's setting) won the sweep in `bench/results/evolution_sweep.md`
                at 100–500 episodes, on tuning seeds; the former 100 / 25 equals random search for
                its first 100 episodes.
            sample_size: S, the members sampled for each tournament (1 ≤ S ≤ P).
            seed: seed of the strategy's generator; by default torch's initial seed (`seed_everything`).
        """
        super().__init__(observation_space, action_space, seed)
        if not 1 <= sample_size <= population_size:
            raise ConfigError("model.init_args.sample_size", f"must be in [1, population_size={population_size}], got {sample_size!r}")
        self.save_hyperparameters(ignore=["observation_space", "action_space"])
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[tuple[int, ...], float]] = deque(maxlen=population_size)

    def initial_state(self) -> Mutation:
        if len(self.population) < self.population_size:
            return Mutation()
        members = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        parent, _ = max((self.population[i] for i in members), key=lambda member: member[1])
        return Mutation(parent, int(self.rng.integers(len(parent))))

    def act(self, observation: Any, state: Mutation) -> tuple[int, Mutation]:
        allowed = self.allowed_actions(observation)
        t, parent = state.step, state.parent
        if parent is None or t >= len(parent):
            action = self.rng.choice(allowed)
        elif t == state.position:
            others = allowed[allowed != parent[t]]
            action = self.rng.choice(others) if others.size else parent[t]
        else:
            action = parent[t] if parent[t] in allowed else self.rng.choice(allowed)
        return int(action), replace(state, step=t + 1)

    def learn(self, episodes: Sequence[Episode]) -> None:
        for episode in episodes:
            self.population.append((tuple(episode.actions), episode.total_reward))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["population"] = [[list(actions), reward] for actions, reward in self.population]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.population.clear()
        self.population.extend((tuple(actions), float(reward)) for actions, reward in checkpoint.get("population", []))
