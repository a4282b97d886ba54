"""Each child's own training curves, `child/*`, for searches that ask for them."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from nasprune.callbacks.episode_metrics import log_scalars
from nasprune.controller.episode import Episode


class ChildCurves(pl.Callback):
    """Logs `child/train_loss`, `child/train_acc`, `child/finetune_loss`, `child/finetune_acc`.

    Children record them only with `data.env_kwargs.training.log_curves: true` (the env then puts
    them in `info["child_curves"]`); otherwise this callback has nothing to do. The step of
    epoch `e` of episode `i` is `i × epochs + e`: the children's curves side by side, in episode
    order, on one axis.
    """

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        for episode in batch:
            for stage, metrics in episode.info.get("child_curves", {}).items():
                for name, values in metrics.items():
                    for epoch, value in enumerate(values):
                        for logger in trainer.loggers:
                            log_scalars(logger, {f"child/{stage}_{name}": value}, episode.index * len(values) + epoch)
