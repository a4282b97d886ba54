"""Plain `nn.Module` child networks built from a `Design` (no Lightning here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

from nasprune.child.search_space import Design, LayerDesign


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def sep_conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Depthwise k×k then pointwise 1×1 (MobileNet's depthwise-separable convolution)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, in_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=in_channels, bias=False
        ),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def build_op(layer: LayerDesign, in_channels: int) -> nn.Module:
    """The layer's operation; a `stride` downsampling is the op's own stride."""
    stride = 2 if layer.downsample == "stride" else 1
    family, kernel = layer.family, layer.kernel_size
    if family == "conv":
        assert layer.width is not None and kernel is not None  # parse_op gives a conv its width and kernel
        return conv_bn_relu(in_channels, layer.width, kernel, stride)
    if family == "sepconv":
        assert layer.width is not None and kernel is not None  # parse_op gives a conv its width and kernel
        return sep_conv_bn_relu(in_channels, layer.width, kernel, stride)
    if family == "maxpool":
        assert kernel is not None  # parse_op gives a pool its kernel
        return nn.MaxPool2d(kernel, stride=stride, padding=kernel // 2)
    if family == "avgpool":
        assert kernel is not None  # parse_op gives a pool its kernel
        return nn.AvgPool2d(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)
    return nn.Identity()


def halving(downsample: str) -> nn.Module:
    """A 2× spatial reduction with the same output size as `downsample` (⌈n/2⌉ for a strided op)."""
    if downsample == "maxpool":
        return nn.MaxPool2d(2)
    return nn.AvgPool2d(2, ceil_mode=downsample == "stride")


class ChildLayer(nn.Module):
    """op → optional 2×2 pool → optional skip from an earlier feature map, added or concatenated.

    An added skip goes through a 1×1 conv + BN projection even when shapes match, so each layer
    keeps its own prune ratio: an identity add would tie the pruned channels of two layers
    (torch-pruning would then prune both at one ratio, not at the design's two).
    """

    def __init__(self, layer: LayerDesign, in_channels: int, skip_channels: int | None, skip_halvings: list[str]) -> None:
        super().__init__()
        self.design = layer
        self.op = build_op(layer, in_channels)
        self.pool = halving(layer.downsample) if layer.downsample in ("maxpool", "avgpool") else None
        self.out_op_channels = layer.width if layer.width is not None else in_channels
        self.skip_resample = nn.Sequential(*(halving(mode) for mode in skip_halvings)) if skip_halvings else None
        self.projection: nn.Sequential | None = None
        self.out_channels = self.out_op_channels
        if layer.skip is not None and layer.skip_mode == "add":
            assert skip_channels is not None  # ChildNet passes a skip's channels with it
            self.projection = nn.Sequential(
                nn.Conv2d(skip_channels, self.out_op_channels, 1, bias=False), nn.BatchNorm2d(self.out_op_channels)
            )
        elif layer.skip is not None:
            assert skip_channels is not None  # ChildNet passes a skip's channels with it
            self.out_channels = self.out_op_channels + skip_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        y = self.op(x)
        if self.pool is not None:
            y = self.pool(y)
        if skip is None:
            return y
        if self.skip_resample is not None:
            skip = self.skip_resample(skip)
        if self.projection is not None:
            return y + self.projection(skip)
        return torch.cat([y, skip], dim=1)

    def output_conv(self) -> nn.Conv2d | None:
        """The convolution whose output channels the layer's prune ratio removes."""
        convs = [m for m in self.op.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1] if convs else None


class ChildNet(nn.Module):
    """stem conv → the design's layers (with their skips) → average pool to the design's `head_grid`
    (1: global) → flatten → linear classifier."""

    def __init__(self, design: Design, in_channels: int, num_classes: int, stem_width: int) -> None:
        super().__init__()
        self.design = design
        self.stem = conv_bn_relu(in_channels, stem_width, 3)
        channels = [stem_width]  # channels of h0, h1, …
        layers = []
        for index, layer in enumerate(design.layers):
            skip_channels = channels[layer.skip] if layer.skip is not None else None
            # the skip path halves its map wherever the layers it bypasses (skip..index) do
            skip_halvings = (
                [d.downsample for d in design.layers[layer.skip : index + 1] if d.downsample != "none"]
                if layer.skip is not None
                else []
            )
            child_layer = ChildLayer(layer, channels[-1], skip_channels, skip_halvings)
            layers.append(child_layer)
            channels.append(child_layer.out_channels)
        self.layers = nn.ModuleList(layers)
        self.head = nn.AdaptiveAvgPool2d(design.head_grid) if design.head_grid > 1 else None
        self.classifier = nn.Linear(channels[-1] * design.head_grid**2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stem(x)]
        for layer in cast(Iterable[ChildLayer], self.layers):  # a ModuleList is hinted to hold plain Modules
            skip = features[layer.design.skip] if layer.design.skip is not None else None
            features.append(layer(features[-1], skip))
        if self.head is None:
            return self.classifier(features[-1].mean(dim=(2, 3)))
        return self.classifier(self.head(features[-1]).flatten(1))

    def output_convs(self) -> list[nn.Conv2d | None]:
        """Per layer, the convolution whose output channels the layer's prune ratio removes."""
        return [layer.output_conv() for layer in cast(Iterable[ChildLayer], self.layers)]  # a ModuleList is hinted to hold plain Modules


def build_model(
    design: Design,
    in_channels: int,
    num_classes: int,
    stem_width: int = 16,
    input_size: tuple[int, int] | None = None,
) -> ChildNet:
    """The child network; with `input_size` (H, W) a design whose maps would collapse raises first."""
    if input_size is not None:
        design.feature_sizes(input_size)
    return ChildNet(design, in_channels, num_classes, stem_width)
