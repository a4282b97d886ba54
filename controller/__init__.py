"""The search controller: LSTM policy, REINFORCE module and the episode data module."""

from nasprune.controller.episodes import Agent, Episode, EpisodeDataModule, make_env, play_episode
from nasprune.controller.policy import LSTMPolicy, ObservationEncoder
from nasprune.controller.reinforce import Reinforce, discounted_returns
from nasprune.controller.strategy import SearchStrategy

__all__ = [
    "Agent",
    "Episode",
    "EpisodeDataModule",
    "LSTMPolicy",
    "ObservationEncoder",
    "Reinforce",
    "SearchStrategy",
    "discounted_returns",
    "make_env",
    "play_episode",
]
