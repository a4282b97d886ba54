"""Physical structured pruning: each layer's output channels removed by its design ratio.

torch-pruning's dependency graph keeps coupled tensors consistent (the next layer's input
channels, BatchNorm, a following depthwise convolution), so tensors really shrink.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from nasprune.child.model import ChildNet


def prune_child(net: ChildNet, input_shape: tuple[int, ...], importance: tp.importance.Importance | None = None) -> ChildNet:
    """Prune `net` in place by its design's per-layer ratios and return it."""
    ratios: dict[nn.Module, float] = {
        conv: layer.prune_ratio
        for conv, layer in zip(net.output_convs(), net.design.layers)
        if conv is not None and layer.prune_ratio > 0
    }
    if not ratios:
        return net
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    pruner = tp.pruner.BasePruner(
        net,
        torch.zeros(1, *input_shape, device=device),
        importance=importance or tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=[net.classifier],
    )
    pruner.step()
    net.train(was_training)
    return net
