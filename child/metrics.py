"""Cost metrics of a (pruned) child network. FLOPs are counted by PyTorch, not by formula."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics.classification import MulticlassAccuracy


def _device(model: nn.Module) -> torch.device:
    tensor: torch.Tensor | None = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on a single example (FlopCounterMode: 2×MACs of conv/matmul)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=_device(model)))
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


@torch.inference_mode()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> float:
    """Accuracy in [0, 1] of `model` (eval mode) over `batches`: Lightning's `val/acc` without a Trainer's set-up."""
    metric = MulticlassAccuracy(num_classes=num_classes, average="micro")
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        for x, y in batches:
            metric.update(model(x.to(device)).cpu(), y)
    finally:
        model.train(was_training)
    return float(metric.compute())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_zeros(model: nn.Module) -> tuple[int, int]:
    """(zero entries, all entries) of the conv and linear weights: what unstructured pruning zeroes."""
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weight = module.weight.detach()
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros, total


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of the serialised `state_dict` (what a checkpoint of the weights takes; int8 shows)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 64, warmup: int = 3, repeats: int = 10
) -> float:
    """Median wall time in milliseconds of one forward of a `batch_size` batch, after `warmup` forwards.

    Eval mode, no autograd, on the model's device (synchronised on CUDA). The median resists the
    odd slow run; the figure is still noisy on a shared machine, which is why it is optional.
    """
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"need repeats ≥ 1, warmup ≥ 0, batch_size ≥ 1; got {repeats}, {warmup}, {batch_size}")
    was_training = model.training
    model.eval()
    device = _device(model)
    x = torch.randn(batch_size, *input_shape, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            synchronize()
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                synchronize()
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    return statistics.median(times)
