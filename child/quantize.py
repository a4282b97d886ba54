"""Per-layer bit-widths: quantization-aware fine-tuning and the costs a reward can use.

A design with a bit-width per weighted layer (`LayerDesign.bits`) is fine-tuned and scored with
fake quantization (torch's `FakeQuantize`: round to the b-bit grid in the forward pass, straight-
through gradient in the backward pass): the weights of each layer's convolutions per output
channel, symmetric, at the layer's bits; the input of every quantized convolution and of the
classifier at 8 bits (unsigned, moving-average min/max during training, frozen in eval). The stem
and the classifier take 8-bit weights whenever any layer is quantized (first and last layers stay
at 8 bits, as in HAQ and APQ).

`size_bits` (Σ params × bits) and `bitops` (Σ MACs × weight bits × activation bits) are the costs.
Only 8 bits is executed as integers by a CPU runtime (`nasprune.child.deploy`); below 8 bits both
are a simulated measure of size and compute for hardware that has such kernels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils import parametrize
from torch.utils.hooks import RemovableHandle
from torch.utils.flop_counter import FlopCounterMode

from nasprune.child.metrics import count_params
from nasprune.child.model import ChildLayer, ChildNet

FLOAT_BITS = 32
ACTIVATION_BITS = 8
EDGE_BITS = 8  # the stem's and the classifier's weights in a quantized design


def is_quantized(net: ChildNet) -> bool:
    return any(layer.bits is not None for layer in net.design.layers)


def weight_bits(net: ChildNet) -> dict[nn.Conv2d | nn.Linear, int]:
    """Bits of each convolution's and the classifier's weights (`FLOAT_BITS` when not quantized)."""
    quantized = is_quantized(net)
    bits: dict[nn.Conv2d | nn.Linear, int] = {}
    for module in net.stem.modules():
        if isinstance(module, nn.Conv2d):
            bits[module] = EDGE_BITS if quantized else FLOAT_BITS
    for layer in cast(Iterable[ChildLayer], net.layers):  # a ModuleList is hinted to hold plain Modules
        bits.update(layer_weight_bits(layer))
    bits[net.classifier] = EDGE_BITS if quantized else FLOAT_BITS
    return bits


def layer_weight_bits(layer: ChildLayer) -> dict[nn.Conv2d | nn.Linear, int]:
    """Bits of the weights of one layer's convolutions (its op and its skip projection)."""
    return {module: layer.design.bits or FLOAT_BITS for module in layer.modules() if isinstance(module, nn.Conv2d)}


def activation_bits(bits: int) -> int:
    """The input bits of a layer whose weights take `bits`: quantized layers read 8-bit activations."""
    return FLOAT_BITS if bits == FLOAT_BITS else ACTIVATION_BITS


def size_bits(net: ChildNet) -> int:
    """Σ params × bits: conv and classifier weights at their bits, every other parameter (BN, biases) at 32."""
    return bits_of(net, weight_bits(net))


def bits_of(module: nn.Module, bits: Mapping[nn.Conv2d | nn.Linear, int]) -> int:
    """Σ params × bits of `module` (or a part of a net): the weights in `bits` at theirs, every other parameter at 32."""
    saved = sum(weighted.weight.numel() * (FLOAT_BITS - b) for weighted, b in bits.items())
    return count_params(module) * FLOAT_BITS - saved


def bitops(net: ChildNet, input_shape: tuple[int, ...]) -> int:
    """Σ MACs × weight bits × activation bits over the convolutions and the classifier, one example.

    MACs are half the FLOPs `FlopCounterMode` counts per module (it names them `ChildNet.<path>`).
    """
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(torch.zeros(1, *input_shape, device=device))
    finally:
        net.train(was_training)
    flops = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items()}
    names = {module: f"{type(net).__name__}.{name}" for name, module in net.named_modules()}
    return sum(flops.get(names[m], 0) // 2 * bits * activation_bits(bits) for m, bits in weight_bits(net).items())


class InputFakeQuant(nn.Module):
    """8-bit fake quantization of a layer's input; its range is observed in training only."""

    def __init__(self) -> None:
        super().__init__()
        self.fake_quant = FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.fake_quant.enable_observer()
        else:
            self.fake_quant.disable_observer()
        return self.fake_quant(x)


def _quantize_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (cast(InputFakeQuant, module.input_quant)(args[0]), *args[1:])  # set by add_fake_quant


def weight_fake_quant(bits: int) -> FakeQuantize:
    """Symmetric per-output-channel fake quantization on the b-bit grid [−(2^(b−1)−1), 2^(b−1)−1].

    The scale follows the current weights (a moving average with constant 1), not the widest range
    seen since the start of fine-tuning, so each channel's largest weight is always a grid end.
    """
    level = 2 ** (bits - 1) - 1
    return FakeQuantize(
        observer=MovingAveragePerChannelMinMaxObserver,
        averaging_constant=1.0,
        quant_min=-level,
        quant_max=level,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


def add_fake_quant(net: ChildNet) -> ChildNet:
    """Fake-quantize `net` in place at its design's bit-widths (a float design is left alone)."""
    if not is_quantized(net):
        return net
    for module, bits in weight_bits(net).items():
        parametrize.register_parametrization(module, "weight", weight_fake_quant(bits))
        module.input_quant = InputFakeQuant()
        module.input_quant_hook = module.register_forward_pre_hook(_quantize_input)  # type: ignore[assignment]  # nn.Module.__setattr__ is hinted Tensor | Module; any attribute is allowed
    return net


def remove_fake_quant(net: ChildNet) -> ChildNet:
    """Bake the fake-quantized weights into plain ones and drop the input quantizers, in place.

    What is left is a float network whose weights lie on their bit grids: it copies, saves, loads
    and exports as any child does (the deployed int8 model is made from it by `nasprune.child.deploy`).
    In place, never on a copy: a deep copy of a parametrized module shares its parametrized class
    with the original, and removing the parametrization from one breaks the other.
    """
    for module in list(net.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        if hasattr(module, "input_quant"):
            cast(RemovableHandle, module.input_quant_hook).remove()  # set by add_fake_quant
            del module.input_quant, module.input_quant_hook
    return net
