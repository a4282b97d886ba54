"""The search controller: LSTM policy, REINFORCE module, baseline strategies and the episode data module."""

from typing import Any

from nasprune.controller.agent import Agent, BatchAgent
from nasprune.controller.baselines import GradientFreeStrategy, RandomSearch, RegularizedEvolution
from nasprune.controller.datamodule import EpisodeDataModule
from nasprune.controller.env_factory import make_env
from nasprune.controller.episode import Episode
from nasprune.controller.local_search import LocalSearch
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
    "LocalSearch",
    "ObservationEncoder",
    "OptunaSearch",
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


def __getattr__(name: str) -> Any:
    """`OptunaSearch` is imported on first use: Optuna is an extra (`pip install nasprune[optuna]`)
    whose import would add a fraction of a second to every other search's start."""
    if name == "OptunaSearch":
        from nasprune.controller.optuna_search import OptunaSearch

        return OptunaSearch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
