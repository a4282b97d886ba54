"""Physical structured pruning: each layer's output channels removed by its design ratio.

torch-pruning's dependency graph keeps coupled tensors consistent (the next layer's input
channels, BatchNorm, a following depthwise convolution, both sides of an added skip, the slices
of a concatenation), so tensors really shrink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

import torch
import torch_pruning as tp
from torch import nn
from torch.nn import functional as F

from nasprune.child.model import ChildLayer, ChildNet

# The channel-importance criteria torch-pruning offers that fit a plain CNN. All rank whole
# coupled groups (every tensor a removed channel touches), not single layers.
IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "fpgm": lambda: tp.importance.FPGMImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(),
}
# Criteria that rank by first-order gradients: they need a backward pass on training data first.
GRADIENT_IMPORTANCES = ("taylor",)


def make_importance(name: str) -> tp.importance.Importance:
    if name not in IMPORTANCES:
        raise ValueError(f"unknown importance {name!r}; allowed: {', '.join(IMPORTANCES)}")
    return IMPORTANCES[name]()


def prune_ratios(net: ChildNet) -> dict[nn.Module, float]:
    """Per prunable conv, its target ratio: the layer's output conv and, for an added skip, its projection.

    Both sides of an add are one torch-pruning group; giving both the layer's ratio makes the
    group's ratio the design's whichever of the two torch-pruning takes as the group's root.
    """
    ratios: dict[nn.Module, float] = {}
    for layer in cast(Iterable[ChildLayer], net.layers):  # a ModuleList is hinted to hold plain Modules
        conv, ratio = layer.output_conv(), layer.design.prune_ratio
        if conv is None or ratio <= 0:
            continue
        ratios[conv] = ratio
        if layer.projection is not None:
            ratios[layer.projection[0]] = ratio
    return ratios


def prune_child(
    net: ChildNet,
    input_shape: tuple[int, ...],
    importance: tp.importance.Importance | str | None = None,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> ChildNet:
    """Prune `net` in place by its design's per-layer ratios and return it.

    `importance` is a torch-pruning importance or a name from `IMPORTANCES` (default `l2`); the
    gradient-based ones (`taylor`) accumulate gradients of the cross-entropy on the `calibration`
    batches (a few training batches) first.
    """
    ratios = prune_ratios(net)
    if not ratios:
        return net
    name = importance if isinstance(importance, str) else None
    importance = make_importance(importance or "l2") if importance is None or isinstance(importance, str) else importance
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    pruner = tp.pruner.BasePruner(
        net,
        torch.zeros(1, *input_shape, device=device),
        importance=importance,
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[net.classifier],
    )
    if name in GRADIENT_IMPORTANCES:
        if calibration is None:
            raise ValueError(f"importance {name!r} needs calibration batches (gradients on training data)")
        net.zero_grad()
        for x, y in calibration:
            F.cross_entropy(net(x.to(device)), y.to(device)).backward()
    pruner.step()
    net.zero_grad(set_to_none=True)
    net.train(was_training)
    return net
