"""The search controller: LSTM policy, REINFORCE module, baseline strategies and the episode data module."""

from nasprune.controller.agent import Agent, BatchAgent
from nasprune.controller.baselines import GradientFreeStrategy, RandomSearch, RegularizedEvolution
from nasprune.controller.datamodule import EpisodeDataModule
from nasprune.controller.env_factory import make_env
from nasprune.controller.episode import Episode
from nasprune.controller.policy import LSTMPolicy, ObservationEncoder
from nasprune.controller.reinforce import Reinforce, discounted_returns
from nasprune.controller.rollout import EnvSlots, VectorSlots, play_episodes
from nasprune.controller.seeds import episode_seed
from nasprune.controller.strategy import SearchStrategy

__all__ = [
    "Agent",
    "BatchAgent",
    "EnvSlots",
    "Episode",
    "EpisodeDataModule",
    "GradientFreeStrategy",
    "LSTMPolicy",
    "ObservationEncoder",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "SearchStrategy",
    "VectorSlots",
    "discounted_returns",
    "episode_seed",
    "make_env",
    "play_episodes",
]
