"""Episodes as Lightning data: a data module that owns the env and plays it with the controller.

Lightning fetches one batch ahead of the training step. Episodes sampled that early would come
from the weights *before* the previous update, so the controller's `training_step` takes the
`dataloader_iter` instead: Lightning then does not prefetch, and each batch of episodes is
played on demand, inside the step, with the current weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from nasprune.config import ConfigError


class Agent(Protocol):
    """Whatever plays episodes: a recurrent state in, an action and the next state out."""

    def initial_state(self) -> Any: ...

    def act(self, observation: Any, state: Any) -> tuple[int, Any]: ...


@dataclass
class Episode:
    """One finished episode: the observation before each action, the actions, the rewards."""

    index: int
    observations: list[Any]
    actions: list[int]
    rewards: list[float]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

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


def play_episode(env: gym.Env, agent: Agent, index: int, seed: int | None = None) -> Episode:
    start = time.perf_counter()
    observation, info = env.reset(seed=seed)
    state = agent.initial_state()
    episode = Episode(index, [], [], [], info)
    done = False
    while not done:
        action, state = agent.act(observation, state)
        episode.observations.append(observation)
        episode.actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        episode.rewards.append(float(reward))
        done = terminated or truncated
    episode.info = info
    episode.seconds = time.perf_counter() - start
    return episode


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """`gymnasium.make` with our envs registered and user errors turned into one config line.

    Any id `gymnasium.make` accepts works, including `my_package.my_module:MyEnv-v0`, which
    imports the user's module (and so registers its env) first.
    """
    import nasprune.envs  # noqa: F401  (registers nasprune/* ids)

    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        return gym.make(env_id, **kwargs)
    except ConfigError as err:
        raise err.under("data.env_kwargs") from None
    except gym.error.Error as err:
        raise ConfigError("data.env_id", f"{env_id!r} cannot be made: {err}") from None
    except ImportError as err:
        raise ConfigError("data.env_id", f"{env_id!r}: cannot import its module ({err})") from None
    except TypeError as err:
        raise ConfigError("data.env_kwargs", f"{env_id!r} rejected its arguments: {err}") from None


class EpisodeStream(IterableDataset):
    """An endless stream of batches of `episodes_per_update` episodes, played on demand."""

    def __init__(self, source: EpisodeDataModule, agent: Agent) -> None:
        super().__init__()
        self.source = source
        self.agent = agent

    def __iter__(self) -> Iterator[list[Episode]]:
        while True:
            yield [self.source.play(self.agent) for _ in range(self.source.hparams.episodes_per_update)]


def _as_is(batch: list[Episode]) -> list[Episode]:
    return batch


class EpisodeDataModule(pl.LightningDataModule):
    """Owns the environment; plays it with the LightningModule being trained (the agent).

    The env is made here, at construction, so a bad id or bad env arguments fail before any
    training, and so its spaces can be handed to the controller.
    """

    def __init__(
        self,
        env_id: str = "nasprune/NasPrune-v0",
        env_kwargs: dict[str, Any] | None = None,
        episodes_per_update: int = 4,
        max_episode_steps: int | None = None,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            env_id: any id `gymnasium.make` accepts, e.g. `CartPole-v1` or `my_module:MyEnv-v0`.
            env_kwargs: keyword arguments for the env (for NasPrune: search_space, datamodule, training, reward).
            episodes_per_update: episodes played per controller update (the batch).
            max_episode_steps: optional time limit added by `gymnasium.make`.
            seed: seed of the env's first reset; by default derived from `seed_everything`.
        """
        super().__init__()
        if episodes_per_update < 1:
            raise ConfigError("data.episodes_per_update", f"must be a positive integer, got {episodes_per_update!r}")
        self.save_hyperparameters()
        self.env = make_env(env_id, env_kwargs, max_episode_steps)
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.episodes_played = 0

    def play(self, agent: Agent) -> Episode:
        seed = None
        if self.episodes_played == 0:
            seed = self.hparams.seed if self.hparams.seed is not None else torch.initial_seed() % 2**32
        episode = play_episode(self.env, agent, self.episodes_played, seed)
        self.episodes_played += 1
        return episode

    def train_dataloader(self) -> DataLoader:
        agent = self.trainer.lightning_module
        return DataLoader(EpisodeStream(self, agent), batch_size=None, collate_fn=_as_is)

    def state_dict(self) -> dict[str, Any]:
        return {"episodes_played": self.episodes_played}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.episodes_played = int(state_dict["episodes_played"])
