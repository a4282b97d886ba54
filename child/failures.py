"""Why a child failed, in a few kinds a user can act on, and a log that does not drown in repeats.

A failing candidate never stops a search: the env gives it the penalty reward and records the
kind and the message (in `info`, hence `history.jsonl`, and in the log). The kinds:

- `invalid_design`: the design cannot take the data's input (e.g. its spatial size collapses);
  found by a dry forward pass before any training.
- `non_finite_loss`: the training loss became NaN or ±inf (diverged, or bad inputs).
- `out_of_memory`: `torch.OutOfMemoryError` (CUDA or another accelerator ran out of memory).
- `exception`: anything else the child's build, training, pruning or scoring raised.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

INVALID_DESIGN = "invalid_design"
NON_FINITE_LOSS = "non_finite_loss"
OUT_OF_MEMORY = "out_of_memory"
EXCEPTION = "exception"


class InvalidDesignError(ValueError):
    """The design cannot process the data's input shape."""


class NonFiniteLossError(ArithmeticError):
    """A child's training loss became NaN or infinite."""


def check_fits_input(net: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Run `net` once on a zero input of `input_shape` (eval mode, no gradients); raise
    `InvalidDesignError` when it cannot, or when it does not return one logit per class."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape, device=next(net.parameters()).device))
    except (RuntimeError, ValueError, IndexError) as err:
        raise InvalidDesignError(f"does not fit the input shape {tuple(input_shape)}: {_one_line(err)}") from err
    finally:
        net.train(was_training)
    if tuple(out.shape) != (1, num_classes):
        raise InvalidDesignError(f"maps input shape {tuple(input_shape)} to {tuple(out.shape)}, not (1, {num_classes})")


class NonFiniteLossGuard(pl.Callback):
    """Stops a child's training with `NonFiniteLossError` at the first NaN/inf loss.

    Hand-rolled because Lightning has no raising equivalent any more (`terminate_on_nan` is gone;
    `EarlyStopping(check_finite=True)` stops quietly, and the child would then be scored as if
    it had trained).
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"training loss became {loss.item()} at epoch {trainer.current_epoch}, batch {batch_idx}")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def classify(err: BaseException) -> tuple[str, str]:
    """The failure kind of `err` and a one-line message (`Type: text`)."""
    if isinstance(err, InvalidDesignError):
        kind = INVALID_DESIGN
    elif isinstance(err, NonFiniteLossError):
        kind = NON_FINITE_LOSS
    elif isinstance(err, torch.OutOfMemoryError):
        kind = OUT_OF_MEMORY
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the next child the memory this one held
    else:
        kind = EXCEPTION
    return kind, f"{type(err).__name__}: {_one_line(err)}"


class FailureLog:
    """Logs the first failure of each kind in full, then only a count at 10, 100, 1000, … of that kind.

    A search that keeps sampling a broken region would otherwise print the same warning
    thousands of times; every failure is still in `history.jsonl`.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.counts: Counter[str] = Counter()

    def record(self, kind: str, message: str, design: str) -> None:
        self.counts[kind] += 1
        count = self.counts[kind]
        if count == 1:
            self.logger.warning("child failed (%s): %s: %s; it gets the failure reward, the search goes on", kind, design, message)
        elif math.log10(count).is_integer():
            self.logger.warning("%d children have failed with %s so far (latest: %s: %s)", count, kind, design, message)
