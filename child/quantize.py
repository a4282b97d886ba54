"""Post-training int8 quantization of a finished child, for the final report of the best design.

What torch 2.14 still runs without errors on CPU: eager dynamic quantization of `nn.Linear`
(`torch.ao.quantization.quantize_dynamic`, weights int8, activations quantized on the fly).
It is deprecated in favour of torchao, which nasprune does not depend on; the deprecation
warnings (of the API and of quantized tensors) are silenced here. Convolutions stay float: for the conv-heavy children the saving is
the classifier's, and `quantization_report` measures rather than assumes it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from nasprune.child.metrics import model_size_bytes


@contextmanager
def _quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        yield


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A CPU copy of `model` with its Linear layers dynamically quantized to int8 (the input is untouched)."""
    float_model = copy.deepcopy(model).cpu().eval()
    with _quiet_deprecations():
        return torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


@torch.inference_mode()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in [0, 1] of `model` (on CPU) over `loader`."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / total


@dataclass(frozen=True)
class QuantizationReport:
    accuracy_float: float
    accuracy_int8: float
    size_bytes_float: int
    size_bytes_int8: int

    def metrics(self) -> dict[str, float]:
        return {f"quantization/{key}": float(value) for key, value in asdict(self).items()}


def quantization_report(model: nn.Module, loader: DataLoader) -> tuple[nn.Module, QuantizationReport]:
    """Quantize `model` and measure accuracy on `loader` and state-dict size, before and after."""
    float_model = copy.deepcopy(model).cpu().eval()
    quantized = quantize_dynamic_int8(float_model)
    report = QuantizationReport(
        accuracy(float_model, loader), accuracy(quantized, loader), model_size_bytes(float_model), model_size_bytes(quantized)
    )
    return quantized, report
