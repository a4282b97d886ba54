"""Writes every finished episode to `history.jsonl` and the best one to `best.json`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from nasprune.controller.episodes import Episode


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def episode_record(episode: Episode, update: int) -> dict[str, Any]:
    """One history line: the env's final `info` plus the episode's index, return, actions and time."""
    return {
        **_jsonable(episode.info),
        "episode": episode.index,
        "update": update,
        "reward": episode.total_reward,
        "length": len(episode),
        "actions": [int(a) for a in episode.actions],
        "seconds": episode.seconds,
        "worker": episode.worker,
    }


class HistoryWriter(pl.Callback):
    """Appends each episode as one JSON line (flushed, and fsynced) and keeps `best.json` current.

    Files go to the run's log directory (`trainer.log_dir`, e.g. `lightning_logs/version_0`).
    Every batch is flushed to the OS at once. By default it is also fsynced, so a finished
    episode survives a crash or power cut; `fsync_interval > 0` fsyncs at most that often (and at
    the end of training), for tabular envs where an fsync per update is a tenth of the run time.
    """

    def __init__(self, history_file: str = "history.jsonl", best_file: str = "best.json", fsync_interval: float = 0.0) -> None:
        self.history_file = history_file
        self.best_file = best_file
        self.fsync_interval = fsync_interval
        self._last_fsync = float("-inf")
        self.history_path: Path | None = None
        self.best_path: Path | None = None
        self.best: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.history_path = run_dir / self.history_file
        self.best_path = run_dir / self.best_file

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        records = [episode_record(episode, trainer.global_step - 1) for episode in batch]
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
            handle.flush()
            if time.monotonic() - self._last_fsync >= self.fsync_interval:
                os.fsync(handle.fileno())
                self._last_fsync = time.monotonic()
        best = max(records, key=lambda r: r["reward"])
        if self.best is None or best["reward"] > self.best["reward"]:
            self.best = best
            temporary = self.best_path.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(best, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.best_path)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.history_path is not None and self.history_path.exists():
            with self.history_path.open("a", encoding="utf-8") as handle:
                os.fsync(handle.fileno())
