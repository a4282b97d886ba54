"""One candidate, end to end: build → train → prune → fine-tune → score.

Each stage is real: Lightning training, torch-pruning that shrinks tensors, FLOPs counted by
PyTorch on the pruned network, accuracy on the validation split (never the test split).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import pytorch_lightning as pl
import torch
from torch import nn

from nasprune.child.data import ChildDataModule
from nasprune.child.failures import NonFiniteLossGuard
from nasprune.child.metrics import count_flops, count_params
from nasprune.child.model import build_model
from nasprune.child.module import ChildModule
from nasprune.child.prune import prune_child
from nasprune.child.search_space import Design
from nasprune.config import ConfigError


@dataclass(frozen=True)
class ChildTraining:
    """How each candidate is trained: cheap by default, every Lightning knob a user expects."""

    epochs: int = 3
    finetune_epochs: int = 1
    lr: float = 0.01
    finetune_lr: float = 0.003
    weight_decay: float = 0.0
    optimizer: str = "adam"
    accelerator: str = "cpu"
    devices: int = 1
    precision: str = "32-true"

    def __post_init__(self) -> None:
        for key in ("epochs", "finetune_epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(key, f"must be a non-negative integer, got {value!r}")
        for key in ("lr", "finetune_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be positive, got {getattr(self, key)!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError("optimizer", f"unknown optimizer {self.optimizer!r}; allowed: adam, sgd")

    @classmethod
    def from_config(cls, config: dict | ChildTraining | None) -> ChildTraining:
        if isinstance(config, ChildTraining):
            return config
        config = dict(config or {})
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ConfigError(unknown[0], f"unknown training key; allowed: {', '.join(sorted(allowed))}")
        return cls(**config)


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured. Accuracy in [0, 1]; FLOPs per example (2×MACs); seconds wall.

    `model` is the pruned, fine-tuned network itself, for whoever exports or inspects it.
    """

    accuracy: float
    flops: int
    params: int
    accuracy_unpruned: float
    flops_unpruned: int
    params_unpruned: int
    seconds: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    def metrics(self) -> dict[str, float]:
        flat: dict[str, float] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("seconds", "model")}
        flat.update({f"seconds/{stage}": value for stage, value in self.seconds.items()})
        return flat


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Child trainings run inside a search: no banners, tips or per-fit warnings."""
    names = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _trainer(training: ChildTraining, max_epochs: int, validate: bool = False) -> pl.Trainer:
    """A silent Trainer; fitting skips validation (accuracy is measured once, at the end)."""
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=training.accelerator,
        devices=training.devices,
        precision=training.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        callbacks=[NonFiniteLossGuard()],
    )


def _fit(module: ChildModule, datamodule: ChildDataModule, training: ChildTraining, epochs: int) -> None:
    if epochs > 0:
        _trainer(training, epochs).fit(module, datamodule=datamodule)


def _validate(module: ChildModule, datamodule: ChildDataModule, training: ChildTraining) -> float:
    (results,) = _trainer(training, 1, validate=True).validate(module, datamodule=datamodule, verbose=False)
    return float(results["val/acc"])


def evaluate_design(
    design: Design,
    datamodule: ChildDataModule,
    training: ChildTraining,
    stem_width: int = 16,
    seed: int = 0,
) -> EvalResult:
    """Train, prune, fine-tune and score `design`; deterministic for a seed on CPU."""
    seconds: dict[str, float] = {}
    with quiet_lightning(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        datamodule.setup("fit")
        shape = datamodule.input_shape
        net = build_model(design, shape[0], datamodule.num_classes, stem_width)

        start = time.perf_counter()
        module = ChildModule(net, datamodule.num_classes, training.lr, training.weight_decay, training.optimizer)
        _fit(module, datamodule, training, training.epochs)
        seconds["train"] = time.perf_counter() - start
        flops_unpruned, params_unpruned = count_flops(net, shape), count_params(net)
        accuracy_unpruned = _validate(module, datamodule, training)

        start = time.perf_counter()
        prune_child(net, shape)
        seconds["prune"] = time.perf_counter() - start

        start = time.perf_counter()
        module = ChildModule(net, datamodule.num_classes, training.finetune_lr, training.weight_decay, training.optimizer)
        _fit(module, datamodule, training, training.finetune_epochs)
        seconds["finetune"] = time.perf_counter() - start

        start = time.perf_counter()
        accuracy = _validate(module, datamodule, training)
        flops, params = count_flops(net, shape), count_params(net)
        seconds["score"] = time.perf_counter() - start
    return EvalResult(accuracy, flops, params, accuracy_unpruned, flops_unpruned, params_unpruned, seconds, net)
