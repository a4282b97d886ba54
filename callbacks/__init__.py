"""Lightning callbacks that observe a search (they never steer it)."""

from nasprune.callbacks.episode_metrics import EpisodeMetrics
from nasprune.callbacks.history import HistoryError, HistoryWriter, episode_record, read_history, run_identity

__all__ = ["EpisodeMetrics", "HistoryError", "HistoryWriter", "episode_record", "read_history", "run_identity"]
