"""The search controller: LSTM policy, REINFORCE module, baseline strategies and the episode data module."""

from nasprune.controller.baselines import GradientFreeStrategy, RandomSearch, RegularizedEvolution
from nasprune.controller.episodes import (
    Agent,
    BatchAgent,
    Episode,
    EpisodeDataModule,
    episode_seed,
    make_env,
    play_episode,
    play_episodes,
)
from nasprune.controller.policy import LSTMPolicy, ObservationEncoder
from nasprune.controller.reinforce import Reinforce, discounted_returns
from nasprune.controller.strategy import SearchStrategy

__all__ = [
    "Agent",
    "BatchAgent",
    "Episode",
    "EpisodeDataModule",
    "GradientFreeStrategy",
    "LSTMPolicy",
    "ObservationEncoder",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SearchStrategy",
    "discounted_returns",
    "episode_seed",
    "make_env",
    "play_episode",
    "play_episodes",
]
