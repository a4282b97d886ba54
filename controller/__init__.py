"""The search controller: LSTM policy, REINFORCE module, baseline strategies and the episode data module.

Its names are imported on first use: a worker process that only evaluates episodes (a Ray actor,
an `async` worker) imports the rollout modules it needs, not torch and Lightning for the policy
(half a gigabyte and seconds per worker, which a cluster of 64 workers pays 64 times).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasprune.controller.agent import Agent, BatchAgent
    from nasprune.controller.baselines import GradientFreeStrategy, RandomSearch, RegularizedEvolution
    from nasprune.controller.datamodule import EpisodeDataModule
    from nasprune.controller.env_factory import make_env
    from nasprune.controller.episode import Episode
    from nasprune.controller.local_search import LocalSearch
    from nasprune.controller.optuna_search import OptunaSearch
    from nasprune.controller.policy import LSTMPolicy, ObservationEncoder
    from nasprune.controller.reinforce import Reinforce, discounted_returns
    from nasprune.controller.rollout import EnvSlots, VectorSlots, play_episodes
    from nasprune.controller.seeds import episode_seed
    from nasprune.controller.strategy import SearchStrategy

# name → the module that defines it
_MODULES = {
    "Agent": "agent",
    "BatchAgent": "agent",
    "GradientFreeStrategy": "baselines",
    "RandomSearch": "baselines",
    "RegularizedEvolution": "baselines",
    "EpisodeDataModule": "datamodule",
    "make_env": "env_factory",
    "Episode": "episode",
    "LocalSearch": "local_search",
    "OptunaSearch": "optuna_search",  # an extra (`pip install nasprune[optuna]`)
    "LSTMPolicy": "policy",
    "ObservationEncoder": "policy",
    "Reinforce": "reinforce",
    "discounted_returns": "reinforce",
    "EnvSlots": "rollout",
    "VectorSlots": "rollout",
    "play_episodes": "rollout",
    "episode_seed": "seeds",
    "SearchStrategy": "strategy",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
