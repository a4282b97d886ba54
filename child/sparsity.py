"""Unstructured magnitude pruning of conv and linear weights, one-shot or on AGP's gradual schedule.

Zeroed weights stay in dense tensors: unstructured sparsity shrinks a compressed checkpoint,
not dense FLOPs or latency. Masks come from `torch.nn.utils.prune` (L1 magnitude).
"""

from __future__ import annotations

from typing import Any, cast

import pytorch_lightning as pl
from torch import nn
from torch.nn.utils import prune


def agp_sparsity(step: int, final: float, initial: float = 0.0, start: int = 0, n_updates: int = 1, frequency: int = 1) -> float:
    """Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(n·Δt))³ for t0 ≤ t ≤ t0 + n·Δt.

    Before t0 the sparsity is s_i, after t0 + n·Δt it is s_f; `step` is the optimizer step t.
    """
    progress = min(max((step - start) / (n_updates * frequency), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def apply_sparsity(model: nn.Module, sparsity: float, current: float = 0.0) -> None:
    """Raise every conv/linear weight's sparsity from `current` to `sparsity` (smallest |w| first).

    `torch.nn.utils.prune` applies a new amount to the entries still unpruned, so the share of
    the remaining weights to remove is (s − s_current)/(1 − s_current). Masks only grow.
    """
    if sparsity <= current:
        return
    amount = (sparsity - current) / (1.0 - current)
    for module, name in prunable_weights(model):
        prune.l1_unstructured(module, name, amount=amount)


def make_permanent(model: nn.Module) -> None:
    """Fold the masks into the weights (zeros stay) and drop the reparametrisation."""
    for module, name in prunable_weights(model):
        if prune.is_pruned(module):
            prune.remove(module, name)


class AGPSparsity(pl.Callback):
    """Gradual magnitude pruning during fine-tuning: before each optimizer step the target is AGP's s_t.

    Hand-rolled rather than Lightning's `ModelPruning`, which updates its amount once per epoch:
    with the one or two fine-tuning epochs of a search that would be a one-shot prune.
    The ramp runs from the first step (t0 = 0) to the last (n·Δt = all fine-tuning steps).
    """

    def __init__(self, final: float, frequency: int = 1) -> None:
        self.final = final
        self.frequency = frequency
        self.current = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.frequency:
            return
        total = max(int(trainer.estimated_stepping_batches), 1)
        n_updates = max(total // self.frequency, 1)
        # t = step + frequency: the sparsity the ramp reaches after this step, so the last step trains at s_f
        target = agp_sparsity(step + self.frequency, self.final, 0.0, 0, n_updates, self.frequency)
        apply_sparsity(cast(nn.Module, pl_module.net), target, self.current)
        self.current = max(self.current, target)
