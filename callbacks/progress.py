"""A Rich progress bar in the unit of a search: episodes done of the budget, best reward, ETA."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasprune.controller.episode import Episode
from nasprune.run_history import best_reward


def episode_budget(trainer: pl.Trainer) -> int | None:
    """Episodes the run will play: updates (`max_steps`, or epochs × updates per epoch) × episodes per update."""
    hparams = getattr(trainer.datamodule, "hparams", {})  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
    per_update = hparams.get("episodes_per_update")
    updates = trainer.max_steps if trainer.max_steps is not None and trainer.max_steps > 0 else None
    if updates is None and trainer.max_epochs is not None and trainer.max_epochs > 0 and hparams.get("updates_per_epoch"):
        updates = trainer.max_epochs * hparams["updates_per_epoch"]
    return None if per_update is None or updates is None else updates * per_update


class SearchProgressBar(ProgressBar):
    """Replaces Lightning's batch counter, which says nothing about a search (one batch = one update).

    The CLI installs it whenever progress bars are on. Child trainings inside the episodes have
    their own bars and logs switched off, so this is the only line that moves.
    """

    def __init__(self, refresh_per_second: float = 2.0, console: Console | None = None) -> None:
        super().__init__()
        self.refresh_per_second = refresh_per_second
        self.console = console
        self._enabled = True
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        self.progress = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("episodes · best reward {task.fields[best]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            refresh_per_second=self.refresh_per_second,
        )
        per_update = getattr(trainer.datamodule, "hparams", {}).get("episodes_per_update", 0)  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
        self.task = self.progress.add_task(
            "search", total=episode_budget(trainer), completed=trainer.global_step * per_update, best=self._best_text(trainer)
        )
        self.progress.start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        if self.progress is None:
            return
        assert self.task is not None  # added with the progress
        self.progress.update(self.task, advance=len(batch), best=self._best_text(trainer))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._stop()

    @staticmethod
    def _best_text(trainer: pl.Trainer) -> str:
        """The run's best reward so far (its history owns that number; restored on resume)."""
        best = best_reward(trainer)
        return "–" if best == -math.inf else f"{best:.4f}"

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
