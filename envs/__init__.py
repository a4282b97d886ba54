"""Gymnasium environments of nasprune, registered on import."""

import gymnasium

from nasprune.envs.nasprune_env import NasPruneEnv

gymnasium.register(id="nasprune/NasPrune-v0", entry_point="nasprune.envs.nasprune_env:NasPruneEnv")

__all__ = ["NasPruneEnv"]
