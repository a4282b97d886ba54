"""Lightning callbacks that observe a search (they never steer it)."""

from nasprune.callbacks.episode_metrics import EpisodeMetrics
from nasprune.callbacks.history import HistoryWriter, episode_record

__all__ = ["EpisodeMetrics", "HistoryWriter", "episode_record"]
