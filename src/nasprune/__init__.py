"""nasprune: joint architecture and per-layer structured-pruning search.

The package root stays light; import the rooms you need:
`nasprune.child`, `nasprune.envs`, `nasprune.controller`, `nasprune.callbacks`.
"""

__version__ = "0.1.0"
