"""Text and figures to whichever loggers a run has: TensorBoard, W&B, or both.

Lightning's `Logger` base has `log_metrics` only; each logger spells text and images its own way,
so the callbacks that publish tables and figures call these two functions instead.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import pytorch_lightning as pl
from matplotlib.figure import Figure
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from nasprune.config import ConfigError
from nasprune.controller.episode import Episode
from nasprune.records import Record


class PeriodicPublisher(pl.Callback):
    """Keeps every episode's history record; publishes a view of them every N updates and at the end."""

    def __init__(self, every_n_updates: int, key: str) -> None:
        if every_n_updates < 1:
            raise ConfigError(f"{key}.every_n_updates", f"must be a positive integer, got {every_n_updates!r}")
        self.every_n_updates = every_n_updates
        self.records: list[Record] = []
        self._logged_update = -1

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        update = batch[-1].update
        self.records += [episode.record for episode in batch]
        if (update + 1) % self.every_n_updates == 0:
            self._publish(trainer, update)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.records and self.records[-1]["update"] != self._logged_update:
            self._publish(trainer, self.records[-1]["update"])

    @abstractmethod
    def _publish(self, trainer: pl.Trainer, update: int) -> None:
        """Log the view of `self.records` at `update`; set `self._logged_update` when something was logged."""


def figure_to_array(figure: Figure) -> np.ndarray:
    """The rendered figure as an RGB image, height × width × 3, uint8."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]  # matplotlib hints the base canvas; the Agg canvas drawn on has buffer_rgba


def log_text(logger: Logger, tag: str, markdown: str, rows: list[list[str]], columns: list[str], step: int) -> None:
    """A table: markdown in TensorBoard's text tab, a `wandb.Table` in W&B (other loggers skip it)."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_text(tag, markdown, global_step=step)
    elif isinstance(logger, WandbLogger):
        logger.log_text(key=tag, columns=columns, data=rows, step=step)


def log_figure(logger: Logger, tag: str, figure: Figure, step: int) -> None:
    """An image: TensorBoard's image tab, W&B's media panel (other loggers skip it)."""
    image = figure_to_array(figure)
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[image], step=step)
