"""The run's best reward as `hp_metric`, the metric of TensorBoard's hparams view."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from nasprune.controller.episode import Episode
from nasprune.run_history import best_reward


class HparamsMetric(pl.Callback):
    """Sets `hp_metric` to the best episode reward so far (the run history's), after every update.

    Lightning logs the hyperparameters (the strategy's and the episode data's) once, at the start,
    with `hp_metric` as their metric; TensorBoard's hparams view shows that scalar's last value,
    so at the end of a run it is the final best reward, and during one the best so far.
    """

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        for logger in trainer.loggers:
            logger.log_metrics({"hp_metric": best_reward(trainer)}, step=batch[-1].update)
