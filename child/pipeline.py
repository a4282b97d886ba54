"""One candidate, end to end: build → train → prune → fine-tune → score.

Each stage is real: Lightning training, torch-pruning that shrinks tensors (optionally unstructured
magnitude pruning on top), fine-tuning (optionally distilled from the unpruned child), FLOPs counted
by PyTorch on the pruned network, accuracy on the validation split (never the test split).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from itertools import islice
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn

from nasprune.child.data import ChildDataModule
from nasprune.child.deploy import require_deploy, score_int8
from nasprune.child.failures import NonFiniteLossGuard
from nasprune.child.metrics import count_flops, count_params, count_zeros, measure_latency, model_size_bytes
from nasprune.child.model import ChildNet, build_model
from nasprune.child.module import LR_SCHEDULERS, OPTIMIZERS, ChildModule
from nasprune.child.prune import GRADIENT_IMPORTANCES, IMPORTANCES, prune_child
from nasprune.child.quantize import add_fake_quant, bitops, remove_fake_quant, size_bits
from nasprune.child.sparsity import AGPSparsity, apply_sparsity, make_permanent
from nasprune.child.search_space import Design
from nasprune.config import ClosedUnitInterval, ConfigError, NonNegativeInt, PositiveFloat, PositiveFraction, PositiveInt, UnitRatio


SPARSITY_SCHEDULES = ("oneshot", "agp")


@dataclass(frozen=True)
class ChildTraining:
    """How each candidate is trained, pruned, fine-tuned and scored: cheap by default.

    Training: the Lightning knobs a user expects (`epochs`, optimizer, learning-rate schedule,
    precision, accelerator/devices, `limit_train_batches`); the batch size is the data module's.
    Pruning: `importance` ranks channels (`l1`, `l2`, `bn_scale`, `taylor`, `fpgm`, `lamp`; `taylor`
    uses gradients of `calibration_batches` training batches). Unstructured `sparsity` (of conv and
    linear weights, one-shot before fine-tuning or on AGP's schedule during it) is reported apart:
    it does not reduce dense FLOPs or latency. `distill_alpha` > 0 fine-tunes with distillation
    from the unpruned trained child. `latency_batch_size` turns on the measured CPU latency.
    Scoring: a design with bit-widths is fine-tuned and scored with fake quantization at them
    (`nasprune.child.quantize`); `quantize: int8` scores the deployed model instead of the float
    one — the accuracy and latency the reward sees are those of its static int8 ONNX model in ONNX
    Runtime, calibrated on `calibration_images` training images (`nasprune.child.deploy`).
    """

    epochs: NonNegativeInt = 3
    finetune_epochs: NonNegativeInt = 1
    lr: PositiveFloat = 0.01
    finetune_lr: PositiveFloat = 0.003
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    lr_scheduler: str = "none"
    accelerator: str = "cpu"
    devices: int = 1
    precision: str = "32-true"
    limit_train_batches: PositiveInt | PositiveFraction | None = None  # None: every batch (a default 1.0 would parse as the int 1: one batch)
    importance: str = "l2"
    calibration_batches: PositiveInt = 4
    sparsity: UnitRatio = 0.0
    sparsity_schedule: str = "oneshot"
    agp_frequency: PositiveInt = 1
    distill_alpha: ClosedUnitInterval = 0.0
    distill_temperature: PositiveFloat = 4.0
    latency_batch_size: PositiveInt | None = None
    latency_warmup: NonNegativeInt = 3
    latency_repeats: PositiveInt = 10
    quantize: Literal["none", "int8"] = "none"
    calibration_images: PositiveInt = 256
    log_curves: bool = False  # record each epoch's train/loss and train/acc (EvalResult.curves, info["child_curves"])

    def __post_init__(self) -> None:
        choices = {
            "optimizer": OPTIMIZERS,
            "lr_scheduler": LR_SCHEDULERS,
            "importance": tuple(IMPORTANCES),
            "sparsity_schedule": SPARSITY_SCHEDULES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(key, f"unknown {key} {getattr(self, key)!r}; allowed: {', '.join(allowed)}")
        if self.quantize == "int8":
            require_deploy("quantize")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | ChildTraining | None) -> ChildTraining:
        return config if isinstance(config, ChildTraining) else cls(**(config or {}))


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation measured. Accuracy in [0, 1]; FLOPs per example (2×MACs); seconds wall, per
    stage (`train`, `validate` of the unpruned child, `prune`, `finetune`, `score`, `latency`).

    `model` is the pruned, fine-tuned network itself, for whoever exports or inspects it (with
    bit-widths: a plain network whose weights lie on their bit grids, the fake quantizers removed).
    `size_bytes` is its serialised state dict; `latency_ms` the median CPU forward time of a
    `latency_batch_size` batch (None when not measured); `sparsity` the share of zero conv/linear
    weights (unstructured pruning; dense FLOPs do not change with it). `curves` (with
    `ChildTraining.log_curves`): per fit stage (`train`, `finetune`) and metric (`loss`, `acc`),
    one value per epoch. `size_bits` and `bitops` are the bit-width costs (`nasprune.child.quantize`).
    With `ChildTraining.quantize` int8, `accuracy` and `latency_ms` are the deployed int8 model's
    (in ONNX Runtime) and `accuracy_float`, `latency_ms_float` the float one's; `size_bytes_int8` is
    its file size.
    """

    accuracy: float
    flops: int
    params: int
    accuracy_unpruned: float
    flops_unpruned: int
    params_unpruned: int
    seconds: dict[str, float] = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False, compare=False)
    size_bytes: int = 0
    size_bytes_unpruned: int = 0
    sparsity: float = 0.0
    latency_ms: float | None = None
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict, repr=False)
    size_bits: int = 0
    bitops: int = 0
    accuracy_float: float | None = None
    latency_ms_float: float | None = None
    size_bytes_int8: int | None = None

    def metrics(self) -> dict[str, float]:
        flat: dict[str, float] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("seconds", "model", "curves") and getattr(self, f.name) is not None
        }
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


class EpochCurves(pl.Callback):
    """Keeps each epoch's `train/loss` and `train/acc`: the child Trainer has no logger to keep them."""

    def __init__(self) -> None:
        self.curves: dict[str, list[float]] = {"loss": [], "acc": []}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name in self.curves:
            self.curves[name].append(float(trainer.callback_metrics[f"train/{name}"]))


class ValidationTimer(pl.Callback):
    """Wall time of the validation runs inside a fit, reported as a stage of its own."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds += time.perf_counter() - self._start


def _trainer(
    training: ChildTraining, max_epochs: int, validate: bool = False, callbacks: list[pl.Callback] | None = None
) -> pl.Trainer:
    """A silent Trainer. Fitting with `validate` checks the validation split once, after the last epoch."""
    return pl.Trainer(
        max_epochs=max_epochs,
        check_val_every_n_epoch=max(max_epochs, 1),
        accelerator=training.accelerator,
        devices=training.devices,
        precision=training.precision,  # type: ignore[arg-type]  # a str Lightning itself checks against its Literal precision names
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        limit_train_batches=training.limit_train_batches,
        callbacks=[NonFiniteLossGuard(), *(callbacks or [])],
    )


TRAINER_KEYS = ("accelerator", "devices", "precision")


def check_trainer_settings(training: ChildTraining) -> None:
    """Build a child Trainer with the settings before any search: a setting Lightning refuses
    (`precision: bogus`, `accelerator: gpu` without a GPU) would fail every child. The settings
    are applied one at a time, in `TRAINER_KEYS` order, so the error names the key that broke it."""
    tried = ChildTraining()
    for key in TRAINER_KEYS:
        tried = dataclasses.replace(tried, **{key: getattr(training, key)})
        try:
            with quiet_lightning():
                _trainer(tried, 1)
        except Exception as err:  # Lightning raises ValueError, MisconfigurationException, RuntimeError, …
            raise ConfigError(key, f"{getattr(training, key)!r} is refused by Lightning: {' '.join(str(err).split())}") from None


def _fit(
    module: ChildModule,
    datamodule: ChildDataModule,
    training: ChildTraining,
    epochs: int,
    callbacks: list[pl.Callback] | None = None,
) -> dict[str, list[float]]:
    """Fit for `epochs`; the per-epoch curves when `training.log_curves`, else `{}`."""
    if epochs == 0:
        return {}
    recorder = EpochCurves()
    extra = [recorder] if training.log_curves else []
    _trainer(training, epochs, callbacks=[*(callbacks or []), *extra]).fit(module, datamodule=datamodule)
    return recorder.curves if training.log_curves else {}


def _fit_and_validate(
    module: ChildModule, datamodule: ChildDataModule, training: ChildTraining, epochs: int
) -> tuple[dict[str, list[float]], float, float]:
    """Fit for `epochs`; the curves, the fitted module's validation accuracy and the validation's seconds.

    The validation runs inside the fit, after its last epoch: the same accuracy as a separate
    `Trainer.validate`, without a second Trainer and its set-up in every episode.
    """
    if epochs == 0:
        start = time.perf_counter()
        return {}, _validate(module, datamodule, training), time.perf_counter() - start
    recorder, timer = EpochCurves(), ValidationTimer()
    extra = [recorder] if training.log_curves else []
    trainer = _trainer(training, epochs, validate=True, callbacks=[timer, *extra])
    trainer.fit(module, datamodule=datamodule)
    return (recorder.curves if training.log_curves else {}), float(trainer.callback_metrics["val/acc"]), timer.seconds


def _validate(module: ChildModule, datamodule: ChildDataModule, training: ChildTraining) -> float:
    (results,) = _trainer(training, 1, validate=True).validate(module, datamodule=datamodule, verbose=False)
    return float(results["val/acc"])


def _module(net: nn.Module, datamodule: ChildDataModule, training: ChildTraining, lr: float, teacher: nn.Module | None = None) -> ChildModule:
    return ChildModule(
        net,
        datamodule.num_classes,
        lr,
        training.weight_decay,
        training.optimizer,
        training.momentum,
        training.lr_scheduler,
        teacher=teacher,
        distill_alpha=training.distill_alpha,
        distill_temperature=training.distill_temperature,
    )


def evaluate_design(
    design: Design,
    datamodule: ChildDataModule,
    training: ChildTraining,
    stem_width: int = 16,
    seed: int = 0,
) -> EvalResult:
    """Train, prune, fine-tune and score `design`; deterministic for a seed on CPU.

    A design whose feature maps would collapse raises a ValueError before any training. A child on
    several devices (`training.devices > 1`) is trained with DDP in processes of its own.
    """
    from nasprune.child.distributed import evaluate_in_processes, needs_own_processes  # it imports this module

    if training.sparsity > 0 and any(layer.bits is not None for layer in design.layers):
        raise ValueError("unstructured sparsity does not combine with bit-widths (fake-quantized weights); use one")
    if needs_own_processes(training):
        return evaluate_in_processes(design, datamodule, training, stem_width, seed)
    seconds: dict[str, float] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    with quiet_lightning(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        datamodule.setup("fit")
        shape = datamodule.input_shape
        net = build_model(design, shape[0], datamodule.num_classes, stem_width, input_size=shape[1:])
        curves["train"], accuracy_unpruned = _train(net, datamodule, training, seconds)
        unpruned = count_flops(net, shape), count_params(net), model_size_bytes(net)
        teacher, sparsity_callbacks = _prune(net, datamodule, training, seconds)
        curves["finetune"], module = _finetune(net, datamodule, training, teacher, sparsity_callbacks, seconds)
        scores = _score(net, module, datamodule, training, seconds)
        if training.quantize == "int8":
            scores = _score_int8(net, datamodule, training, scores, seconds)
    flops_unpruned, params_unpruned, size_unpruned = unpruned
    return EvalResult(
        **scores,
        accuracy_unpruned=accuracy_unpruned,
        flops_unpruned=flops_unpruned,
        params_unpruned=params_unpruned,
        seconds=seconds,
        model=net,
        size_bytes_unpruned=size_unpruned,
        curves={stage: values for stage, values in curves.items() if values},
    )


def _train(net: nn.Module, datamodule: ChildDataModule, training: ChildTraining, seconds: dict[str, float]) -> tuple[dict[str, list[float]], float]:
    """Train the unpruned child, validating it inside the same fit: its curves and accuracy."""
    start = time.perf_counter()
    module = _module(net, datamodule, training, training.lr)
    curves, accuracy, seconds["validate"] = _fit_and_validate(module, datamodule, training, training.epochs)
    seconds["train"] = time.perf_counter() - start - seconds["validate"]
    return curves, accuracy


def _prune(
    net: ChildNet, datamodule: ChildDataModule, training: ChildTraining, seconds: dict[str, float]
) -> tuple[nn.Module | None, list[pl.Callback]]:
    """Prune `net` in place (its distillation teacher is copied first); the sparsity callbacks of its fine-tuning."""
    start = time.perf_counter()
    teacher = copy.deepcopy(net).eval() if training.distill_alpha > 0 else None
    calibration = None
    if training.importance in GRADIENT_IMPORTANCES:
        calibration = list(islice(iter(datamodule.train_dataloader()), training.calibration_batches))
    prune_child(net, datamodule.input_shape, training.importance, calibration)
    add_fake_quant(net)  # quantization-aware fine-tuning at the design's bit-widths (float: a no-op)
    callbacks: list[pl.Callback] = []
    if training.sparsity > 0 and (training.sparsity_schedule == "oneshot" or training.finetune_epochs == 0):
        apply_sparsity(net, training.sparsity)
    elif training.sparsity > 0:
        callbacks.append(AGPSparsity(training.sparsity, training.agp_frequency))
    seconds["prune"] = time.perf_counter() - start
    return teacher, callbacks


def _finetune(
    net: nn.Module,
    datamodule: ChildDataModule,
    training: ChildTraining,
    teacher: nn.Module | None,
    callbacks: list[pl.Callback],
    seconds: dict[str, float],
) -> tuple[dict[str, list[float]], ChildModule]:
    """Fine-tune the pruned child (distilled from `teacher` when there is one); its sparsity made permanent."""
    start = time.perf_counter()
    module = _module(net, datamodule, training, training.finetune_lr, teacher)
    curves = _fit(module, datamodule, training, training.finetune_epochs, callbacks)
    make_permanent(net)
    seconds["finetune"] = time.perf_counter() - start
    return curves, module


def timed_latency(net: nn.Module, shape: tuple[int, ...], training: ChildTraining, seconds: dict[str, float]) -> float | None:
    """The CPU latency `training` asks for (None unless `latency_batch_size` is set), its wall time in `seconds`."""
    if training.latency_batch_size is None:
        return None
    start = time.perf_counter()
    latency = measure_latency(net, shape, training.latency_batch_size, training.latency_warmup, training.latency_repeats)
    seconds["latency"] = time.perf_counter() - start
    return latency


def _score(net: ChildNet, module: ChildModule, datamodule: ChildDataModule, training: ChildTraining, seconds: dict[str, float]) -> dict[str, Any]:
    """The pruned child's `EvalResult` fields: accuracy and costs (and latency, when asked for)."""
    shape = datamodule.input_shape
    start = time.perf_counter()
    accuracy = _validate(module, datamodule, training)
    remove_fake_quant(net)  # scored with fake quantization; kept (and timed) with its weights on their grids
    flops, params = count_flops(net, shape), count_params(net)
    zeros, weights = count_zeros(net)
    size = model_size_bytes(net)
    costs = {"size_bits": size_bits(net), "bitops": bitops(net, shape)}
    seconds["score"] = time.perf_counter() - start
    latency = timed_latency(net, shape, training, seconds)
    scores = {"accuracy": accuracy, "flops": flops, "params": params, "size_bytes": size, "sparsity": zeros / weights, "latency_ms": latency}
    return {**scores, **costs}


def _score_int8(net: nn.Module, datamodule: ChildDataModule, training: ChildTraining, scores: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    """`scores` with the deployed int8 model's accuracy and latency in place of the float ones (kept apart)."""
    start = time.perf_counter()
    t = training
    deployed = score_int8(net, datamodule, t.calibration_images, t.latency_batch_size, t.latency_warmup, t.latency_repeats)
    seconds["int8"] = time.perf_counter() - start
    return {
        **scores,
        "accuracy": deployed["accuracy"],
        "latency_ms": deployed.get("latency_ms"),
        "accuracy_float": scores["accuracy"],
        "latency_ms_float": scores["latency_ms"],
        "size_bytes_int8": deployed["size_bytes"],
    }
