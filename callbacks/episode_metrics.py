"""Logs each episode's return and every numeric metric of its `info` as `episode/*` scalars."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from nasprune.controller.episodes import Episode


class EpisodeMetrics(pl.Callback):
    """`episode/reward`, `episode/length`, `episode/accuracy`, `episode/flops`, … at step = episode index."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        for episode in batch:
            metrics = {f"episode/{key}": value for key, value in episode.metrics().items()}
            metrics["episode/reward"] = episode.total_reward
            metrics["episode/length"] = float(len(episode))
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=episode.index)
