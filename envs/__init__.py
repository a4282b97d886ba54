"""Gymnasium environments of nasprune, registered on import."""

import gymnasium

from nasprune.envs.nasbench201_env import NasBench201Env
from nasprune.envs.nasprune_env import NasPruneEnv
from nasprune.envs.prune_model_env import PruneModelEnv

gymnasium.register(id="nasprune/NasPrune-v0", entry_point="nasprune.envs.nasprune_env:NasPruneEnv")
gymnasium.register(id="nasprune/PruneModel-v0", entry_point="nasprune.envs.prune_model_env:PruneModelEnv")
gymnasium.register(id="nasprune/NasBench201-v0", entry_point="nasprune.envs.nasbench201_env:NasBench201Env")

__all__ = ["NasBench201Env", "NasPruneEnv", "PruneModelEnv"]
