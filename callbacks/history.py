"""`history.jsonl` (every finished episode, durably) and `best.json` (the run's best so far).

The history is the record a search must never lose. Each episode is appended as one JSON line the
moment it finishes (before the update that learns from it), flushed to the OS at once (so a
killed process loses nothing), and fsynced (so a crashed machine loses nothing) — per episode by
default, and in any case before every checkpoint: a checkpoint never counts an episode the history
could lose.

The writer only writes. What the run counts, its best so far, and how a resumed run takes the
file back (`--ckpt_path last`) belong to the run's `RunHistory` (`nasprune.run_history`), which
the episode data module owns; the writer tells it where the file is.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

import pytorch_lightning as pl

from nasprune.config import ConfigError
from nasprune.controller.episode import Episode
from nasprune.files import atomic_write
from nasprune.records import Record
from nasprune.run_history import RunHistory, history_of

_UNWRITTEN: Any = object()  # what `best.json` held before this fit wrote it: unknown


class HistoryWriter(pl.Callback):
    """Appends each finished episode to `history.jsonl` and keeps `best.json` current.

    Files go to the run's log directory (`trainer.log_dir`, e.g. `lightning_logs/version_0`).
    Every episode is flushed to the OS at once and fsynced; `fsync_interval > 0` fsyncs at most
    that often (tabular envs, where an fsync per episode would dominate) — and always before a
    checkpoint is written and at the end.
    """

    def __init__(self, history_file: str = "history.jsonl", best_file: str = "best.json", fsync_interval: float = 0.0) -> None:
        if fsync_interval < 0:
            raise ConfigError("history.fsync_interval", f"must be >= 0 seconds, got {fsync_interval!r}")
        for key, name in (("history.history_file", history_file), ("history.best_file", best_file)):
            if not name or Path(name).name != name:
                raise ConfigError(key, f"must be a plain file name (it goes into the run directory), got {name!r}")
        self.history_file = history_file
        self.best_file = best_file
        self.fsync_interval = fsync_interval
        self.history_path: Path | None = None
        self.best_path: Path | None = None
        self._history: RunHistory | None = None
        self._best_written: Record | None = _UNWRITTEN
        self._handle: IO[str] | None = None
        self._last_fsync = float("-inf")
        self._unsynced = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Tell the run's history where its file is (it checks the file before the first episode)."""
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.history_path = run_dir / self.history_file
        self.best_path = run_dir / self.best_file
        self._history = history_of(trainer)
        self._best_written = _UNWRITTEN
        if trainer.global_rank == 0:
            self._history.attach(self.history_path)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Open the file for appending, now that the run's history has checked it (a resume may have cut it)."""
        if trainer.global_rank != 0:
            return
        assert self.history_path is not None  # set in setup
        self._write_best()
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.history_path.open("a", encoding="utf-8")

    def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
        """Append the episode the moment it ends, before the update that learns from it."""
        if trainer.global_rank != 0:
            return
        assert self._handle is not None  # opened in on_train_start
        self._handle.write(episode.line + "\n")
        self._handle.flush()
        self._unsynced = True
        if time.monotonic() - self._last_fsync >= self.fsync_interval:
            self._fsync()
        self._write_best()

    def _write_best(self) -> None:
        """`best.json` as the run's history has it (none when it has no episode), when that changed."""
        assert self._history is not None and self.best_path is not None  # set in setup
        best = self._history.best
        if best is self._best_written:
            return
        if best is None:
            self.best_path.unlink(missing_ok=True)
        else:
            atomic_write(self.best_path, json.dumps(best, indent=2) + "\n")
        self._best_written = best

    def _fsync(self) -> None:
        if self._handle is not None and self._unsynced:
            os.fsync(self._handle.fileno())
            self._unsynced = False
            self._last_fsync = time.monotonic()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Runs before the checkpoint is written: everything it counts is on disk first."""
        self._fsync()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fsync()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A resume with nothing left to play never starts training; its `best.json` is still the history's."""
        if trainer.global_rank == 0:
            self._write_best()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._handle is not None:
            self._fsync()
            self._handle.close()
            self._handle = None
