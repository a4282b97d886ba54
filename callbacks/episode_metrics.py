"""Logs each episode's return and every numeric metric of its `info` as `episode/*` scalars."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger, TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from nasprune.controller.episode import Episode


def log_scalars(logger: Logger, metrics: dict[str, float], step: int) -> None:
    """`logger.log_metrics`, but one TensorBoard event for all the scalars of a step.

    `TensorBoardLogger.log_metrics` writes one event per scalar, each a hand-off to TensorBoard's
    writer thread; with a dozen scalars per episode that made logging the slowest part of a
    search on a tabular env. The tags and steps are the same either way.
    """
    if isinstance(logger, TensorBoardLogger):
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in metrics.items()])
        logger.experiment.file_writer.add_summary(summary, global_step=step)
    else:
        logger.log_metrics(metrics, step=step)


class EpisodeMetrics(pl.Callback):
    """`episode/reward`, `episode/length`, `episode/accuracy`, `episode/flops`, … at step = episode index."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        if trainer.global_rank != 0:
            return
        for episode in batch:
            metrics = {f"episode/{key}": value for key, value in episode.metrics().items()}
            metrics["episode/reward"] = episode.total_reward
            metrics["episode/length"] = float(len(episode))
            for logger in trainer.loggers:
                log_scalars(logger, metrics, episode.index)
