"""The interface every search strategy shares, so strategies swap by one config line.

A strategy is a LightningModule that also acts as the agent of `EpisodeDataModule`: the data
module plays episodes by calling `initial_state` and `act`; the strategy's `training_step` gets
the finished episodes and learns from them (or not, for random search). The per-update reward
curves are logged here, identically for every strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from gymnasium import spaces

from nasprune.config import ConfigError
from nasprune.controller.episodes import Episode


class SearchStrategy(pl.LightningModule, ABC):
    """Base class: holds the env's spaces and the search's running totals (saved in checkpoints)."""

    def __init__(self, observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None) -> None:
        super().__init__()
        if observation_space is None or action_space is None:
            raise ConfigError("model", "a search strategy needs the env's observation_space and action_space")
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError("data.env_id", f"search strategies need a Discrete action space, got {action_space}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.register_buffer("reward_best", torch.tensor(float("-inf")))
        self.register_buffer("episodes_done", torch.tensor(0))

    def initial_state(self) -> Any:
        """The agent's state at the start of an episode."""
        return None

    @abstractmethod
    def act(self, observation: Any, state: Any) -> tuple[int, Any]:
        """The next action (an `int` the observation's `action_mask` allows) and the next state."""

    def log_search(self, episodes: Sequence[Episode], **extra: torch.Tensor | float) -> None:
        """Update the running totals and log `search/*` for this update."""
        rewards = torch.tensor([ep.total_reward for ep in episodes])
        self.reward_best.fill_(max(self.reward_best.item(), rewards.max().item()))
        self.episodes_done.add_(len(episodes))
        metrics = {
            "search/reward": rewards.mean(),
            "search/reward_max": rewards.max(),
            "search/reward_best": self.reward_best.clone(),
            "search/episodes": self.episodes_done.float(),
            **{f"search/{key}": value for key, value in extra.items()},
        }
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(episodes))
