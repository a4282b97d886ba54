"""The LightningModule that trains and validates one child network."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from nasprune.child.distill import distillation_loss

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULERS = ("none", "cosine", "onecycle")


class ChildModule(pl.LightningModule):
    """Cross-entropy classification; logs `train/loss`, `train/acc`, `val/loss`, `val/acc`, `test/acc`.

    With a `teacher` (the unpruned, trained child) the training loss is Hinton's distillation
    loss, mixing the teacher's soft targets at `temperature` with the labels by `distill_alpha`.
    The teacher is frozen and always in eval mode; only `net` is optimised.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        momentum: float = 0.9,
        lr_scheduler: str = "none",
        teacher: nn.Module | None = None,
        distill_alpha: float = 0.5,
        distill_temperature: float = 4.0,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; allowed: {', '.join(LR_SCHEDULERS)}")
        self.save_hyperparameters(ignore=["net", "teacher"])
        self.lr, self.weight_decay, self.optimizer, self.momentum = lr, weight_decay, optimizer, momentum
        self.lr_scheduler, self.distill_alpha, self.distill_temperature = lr_scheduler, distill_alpha, distill_temperature
        self.net = net
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        if self.teacher is not None:
            self.teacher.eval()
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            loss = distillation_loss(logits, teacher_logits, y, self.distill_alpha, self.distill_temperature)
        else:
            loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self(x), y)
        self.log("test/acc", self.test_acc)

    def configure_optimizers(self) -> Any:
        params = self.net.parameters()
        lr, decay = self.lr, self.weight_decay
        if self.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=decay)
        elif self.optimizer == "adamw":
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=decay)
        else:
            optimizer = torch.optim.Adam(params, lr=lr, weight_decay=decay)
        if self.lr_scheduler == "none":
            return optimizer
        steps = max(int(self.trainer.estimated_stepping_batches), 1)
        if self.lr_scheduler == "cosine":
            scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
