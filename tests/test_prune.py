"""Structured pruning across skips and concatenations: shapes, costs and coupled channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analytic import analytic_costs
from nasprune.child import IMPORTANCES, Design, LayerDesign, build_model, count_flops, count_params, prune_child

CLASSES = 10
STEM = 8


def skip_designs(r: float) -> list[Design]:
    """Designs with added and concatenated skips, strides and pools, every weighted layer at ratio r."""
    L = LayerDesign
    return [
        Design((L("conv3x3", 16, r, skip=0), L("conv3x3", 16, r, skip=1), L("conv3x3", 16, r, skip=0))),
        Design((
            L("conv3x3", 16, r, skip=0, skip_mode="concat"),
            L("sepconv5x5", 32, r, "stride", skip=0),
            L("conv5x5", 8, r, "maxpool", skip=1, skip_mode="concat"),
            L("maxpool3x3", downsample="stride"),
            L("sepconv3x3", 16, r, skip=2),
        )),
        Design((
            L("identity", downsample="avgpool"),
            L("sepconv3x3", 24, r, skip=0, skip_mode="concat"),
            L("conv3x3", 12, r, "stride", skip=2, skip_mode="concat"),
            L("avgpool3x3"),
            L("conv3x3", 20, r, skip=1),
        )),
    ]


CASES = [(design, r) for r in (0.25, 0.5, 0.75) for design in skip_designs(r)]


@pytest.mark.parametrize("input_shape", [(1, 8, 8), (3, 11, 11)], ids=["8x8", "3x11x11"])
@pytest.mark.parametrize(("design", "ratio"), CASES, ids=[f"{d}" for d, _ in CASES])
def test_pruned_skip_designs_run_and_cost_what_their_shapes_imply(design: Design, ratio: float, input_shape: tuple) -> None:
    net = build_model(design, input_shape[0], CLASSES, STEM, input_size=input_shape[1:])
    assert (count_flops(net, input_shape), count_params(net)) == analytic_costs(design, input_shape, CLASSES, STEM, pruned=False)
    prune_child(net, input_shape)
    assert (count_flops(net, input_shape), count_params(net)) == analytic_costs(design, input_shape, CLASSES, STEM, pruned=True)
    widths = [conv.out_channels for conv in net.output_convs() if conv is not None]
    assert widths == [layer.pruned_width for layer in design.layers if layer.width is not None]
    for layer in net.layers:
        if layer.projection is not None:  # both sides of an add keep the same number of channels
            assert layer.projection[0].out_channels == layer.output_conv().out_channels
    assert net(torch.randn(3, *input_shape)).shape == (3, CLASSES)


def _layer_outputs(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outputs.append(o.detach())) for layer in net.layers]
    with torch.no_grad():
        net.eval()(x)
    for hook in hooks:
        hook.remove()
    return outputs


def _matching_channels(pruned: torch.Tensor, original: torch.Tensor) -> list[int]:
    """For each channel of `pruned`, the index of the channel of `original` it equals (−1 if none)."""
    return [
        next((j for j in range(original.shape[1]) if torch.allclose(pruned[:, i], original[:, j], atol=1e-5)), -1)
        for i in range(pruned.shape[1])
    ]


def test_both_sides_of_an_add_and_the_slices_of_a_concat_keep_the_same_channels() -> None:
    """Pruning only layer 1 (an added skip) leaves its surviving channels exactly as they were: if
    the projection kept other indices than the conv, no sum would match an original channel."""
    design = Design((
        LayerDesign("conv3x3", 8),
        LayerDesign("conv3x3", 16, 0.5, skip=0),
        LayerDesign("conv3x3", 8, skip=2, skip_mode="concat"),
    ))
    torch.manual_seed(0)
    net = build_model(design, 1, CLASSES, STEM)
    for module in net.modules():  # non-trivial BatchNorm statistics, so every channel differs
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, 1, 8, 8)
    before = _layer_outputs(net, x)
    prune_child(net, (1, 8, 8))
    after = _layer_outputs(net, x)
    assert after[0].shape[1] == 8 and torch.allclose(after[0], before[0])
    kept = _matching_channels(after[1], before[1])
    assert len(kept) == 8 and -1 not in kept and len(set(kept)) == 8
    # layer 2 concatenates its 8 conv channels with h2 (layer 1's output, its own input): the kept channels
    assert after[2].shape[1] == 8 + 8
    assert torch.allclose(after[2][:, 8:], before[2][:, 8 + torch.tensor(kept)], atol=1e-5)
    assert net.layers[2].op[0].in_channels == 8  # and its conv reads only the kept channels of h2


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_every_importance_prunes_to_the_design_widths(importance: str) -> None:
    design = skip_designs(0.5)[1]
    net = build_model(design, 1, CLASSES, STEM)
    calibration = [(torch.randn(8, 1, 8, 8), torch.randint(0, CLASSES, (8,)))]
    prune_child(net, (1, 8, 8), importance, calibration)
    assert (count_flops(net, (1, 8, 8)), count_params(net)) == analytic_costs(design, (1, 8, 8), CLASSES, STEM, pruned=True)
    assert all(p.grad is None for p in net.parameters())  # Taylor's calibration gradients are cleared


def test_taylor_ranks_by_gradient_and_needs_calibration_batches() -> None:
    design = Design((LayerDesign("conv3x3", 8, 0.5),))
    net = build_model(design, 1, CLASSES, STEM)
    with pytest.raises(ValueError, match="needs calibration batches"):
        prune_child(net, (1, 8, 8), "taylor")
    with pytest.raises(ValueError, match="unknown importance 'l3'"):
        prune_child(net, (1, 8, 8), "l3")


def test_bn_scale_keeps_the_channels_with_the_largest_batchnorm_scales() -> None:
    design = Design((LayerDesign("conv3x3", 8, 0.5),))
    net = build_model(design, 1, CLASSES, STEM)
    bn = net.layers[0].op[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.1, 3.0, 0.2, 2.0, 0.3, 4.0, 0.4, 1.0]))
    prune_child(net, (1, 8, 8), "bn_scale")
    assert bn.weight.tolist() == [3.0, 2.0, 4.0, 1.0]
