"""Plain `nn.Module` child networks built from a `Design` (no Lightning here)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasprune.child.search_space import Design


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def sep_conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Depthwise k×k then pointwise 1×1 (MobileNet's depthwise-separable convolution)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# op name -> builder(in_channels, width); weightless ops ignore the width.
OP_BUILDERS: dict[str, Callable[[int, int | None], nn.Module]] = {
    "conv3x3": lambda c, w: conv_bn_relu(c, w, 3),
    "conv5x5": lambda c, w: conv_bn_relu(c, w, 5),
    "sepconv3x3": lambda c, w: sep_conv_bn_relu(c, w, 3),
    "maxpool3x3": lambda c, w: nn.MaxPool2d(3, stride=1, padding=1),
    "identity": lambda c, w: nn.Identity(),
}


class ChildNet(nn.Module):
    """stem conv → the design's layers → global average pool → linear classifier."""

    def __init__(self, design: Design, in_channels: int, num_classes: int, stem_width: int) -> None:
        super().__init__()
        self.design = design
        self.stem = conv_bn_relu(in_channels, stem_width, 3)
        channels = stem_width
        layers = []
        for layer in design.layers:
            layers.append(OP_BUILDERS[layer.op](channels, layer.width))
            channels = layer.width if layer.width is not None else channels
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.classifier(x.mean(dim=(2, 3)))

    def output_convs(self) -> list[nn.Conv2d | None]:
        """Per layer, the convolution whose output channels the layer's prune ratio removes."""
        convs = []
        for layer in self.layers:
            layer_convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
            convs.append(layer_convs[-1] if layer_convs else None)
        return convs


def build_model(design: Design, in_channels: int, num_classes: int, stem_width: int = 16) -> ChildNet:
    return ChildNet(design, in_channels, num_classes, stem_width)
