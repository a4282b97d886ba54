"""The interface every search strategy shares, so strategies swap by one config line.

A strategy is a LightningModule that also acts as the agent of `EpisodeDataModule`: the data
module plays episodes by calling `initial_state` and `act`; the strategy's `training_step` gets
the finished episodes and learns from them (or not, for random search). The per-update reward
curves are logged here, identically for every strategy.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from gymnasium import spaces

from nasprune.config import ConfigError, PositiveCount
from nasprune.controller.episode import Episode
from nasprune.run_history import best_reward


class SearchStrategy(pl.LightningModule, ABC):
    """Base class: holds the env's spaces and the search's running totals (saved in checkpoints)."""

    episodes_done: torch.Tensor
    recent_rewards: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        recent_window: PositiveCount = 20,
    ) -> None:
        """`recent_window` episodes make up `search/reward_recent` (a smoothed curve; a stopping signal)."""
        super().__init__()
        if observation_space is None or action_space is None:
            raise ConfigError("model", "a search strategy needs the env's observation_space and action_space")
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError("data.env_id", f"search strategies need a Discrete action space, got {action_space}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.register_buffer("episodes_done", torch.tensor(0))
        self.register_buffer("recent_rewards", torch.full((recent_window,), float("nan")))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning's checkpoints hold no random states; a resumed search needs them.

        Stored as tensors and plain Python values, which `torch.load(weights_only=True)` accepts.
        """
        numpy_state = np.random.get_state(legacy=False)
        numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": numpy_state,
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        numpy_state = dict(states["numpy"])
        numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
        np.random.set_state(numpy_state)
        random.setstate(states["python"])

    def initial_state(self) -> Any:
        """The agent's state at the start of an episode."""
        return None

    @abstractmethod
    def act(self, observation: Any, state: Any) -> tuple[int, Any]:
        """The next action (an `int` the observation's `action_mask` allows) and the next state."""

    def initial_states(self, n: int) -> Any:
        """The states of `n` episodes played side by side (`EpisodeDataModule(num_envs=n)`)."""
        return [self.initial_state() for _ in range(n)]

    def act_batch(self, observations: Sequence[Any], states: Any) -> tuple[list[int], Any]:
        """One action per episode played side by side; by default one `act` each."""
        pairs = [self.act(observation, state) for observation, state in zip(observations, states)]
        return [action for action, _ in pairs], [state for _, state in pairs]

    def log_search(self, episodes: Sequence[Episode], **extra: torch.Tensor | float) -> None:
        """Update the running totals and log `search/*` for this update (the best so far is the run history's)."""
        rewards = torch.tensor([ep.total_reward for ep in episodes])
        self.episodes_done.add_(len(episodes))
        self.recent_rewards.copy_(torch.cat([self.recent_rewards, rewards.to(self.recent_rewards)])[-len(self.recent_rewards) :])
        metrics: dict[str, torch.Tensor | float] = {
            "search/reward": rewards.mean(),
            "search/reward_max": rewards.max(),
            "search/reward_best": best_reward(self.trainer),
            "search/episodes": self.episodes_done.float(),
            "search/reward_recent": self.recent_rewards.nanmean(),
            **{f"search/{key}": value for key, value in extra.items()},
        }
        if self._logs_this_update():
            self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(episodes))

    def _logs_this_update(self) -> bool:
        """Whether Lightning writes this update's step metrics (every `log_every_n_steps`).

        `self.log` costs ~0.2 ms a key: a fifth of an update's time on the tabular env. Updates
        whose values Lightning would not write skip it; monitored values (EarlyStopping's,
        the progress bar's) refresh at the same cadence as the curves, at the end of every epoch
        (`data.updates_per_epoch`), where EarlyStopping reads them, and at the last update.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        step = trainer.global_step + 1
        per_epoch = getattr(trainer.datamodule, "hparams", {}).get("updates_per_epoch")  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
        return (
            step % trainer.log_every_n_steps == 0  # type: ignore[attr-defined]  # set at runtime by Lightning's logger connector, undeclared
            or (per_epoch is not None and step % per_epoch == 0)
            or (trainer.max_steps > 0 and step >= trainer.max_steps)
        )
