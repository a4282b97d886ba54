"""Lightning callbacks that observe a search (they never steer it)."""

from nasprune.callbacks.child_curves import ChildCurves
from nasprune.callbacks.episode_metrics import EpisodeMetrics
from nasprune.callbacks.export import ExportBest
from nasprune.callbacks.hparams import HparamsMetric
from nasprune.callbacks.history import HistoryWriter
from nasprune.callbacks.pareto import ParetoPlot
from nasprune.callbacks.progress import SearchProgressBar
from nasprune.callbacks.top_k import TopKTable

__all__ = [
    "ChildCurves",
    "EpisodeMetrics",
    "ExportBest",
    "HistoryWriter",
    "HparamsMetric",
    "ParetoPlot",
    "SearchProgressBar",
    "TopKTable",
]
