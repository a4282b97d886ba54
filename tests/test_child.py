from __future__ import annotations

import pytest
import torch
from torch import nn

from nasprune.child import (
    ChildTraining,
    Design,
    DigitsDataModule,
    LayerDesign,
    build_model,
    count_flops,
    count_params,
    evaluate_design,
    prune_child,
)

INPUT = (1, 8, 8)
CLASSES = 10
STEM = 16


def analytic_costs(design: Design, pruned: bool) -> tuple[int, int]:
    """FLOPs (2×MACs of convs and the classifier) and params implied by the design's shapes."""
    pixels = INPUT[1] * INPUT[2]
    c = STEM
    flops = 2 * pixels * INPUT[0] * STEM * 9
    params = INPUT[0] * STEM * 9 + 2 * STEM
    for layer in design.layers:
        if layer.width is None:
            continue
        out = layer.pruned_width if pruned else layer.width
        if layer.op in ("conv3x3", "conv5x5"):
            k2 = 9 if layer.op == "conv3x3" else 25
            flops += 2 * pixels * c * out * k2
            params += c * out * k2 + 2 * out
        else:  # sepconv3x3: depthwise 3×3 on c channels, then pointwise c → out
            flops += 2 * pixels * c * 9 + 2 * pixels * c * out
            params += c * 9 + c * out + 2 * out
        c = out
    flops += 2 * c * CLASSES
    params += c * CLASSES + CLASSES
    return flops, params


DESIGNS = [
    Design((
        LayerDesign("conv5x5", 16, 0.5),
        LayerDesign("sepconv3x3", 32, 0.75),
        LayerDesign("maxpool3x3"),
        LayerDesign("conv3x3", 8, 0.25),
        LayerDesign("identity"),
    )),
    Design((LayerDesign("sepconv3x3", 32, 0.5), LayerDesign("sepconv3x3", 16, 0.25), LayerDesign("sepconv3x3", 8, 0.0))),
    Design((LayerDesign("identity"), LayerDesign("conv3x3", 8, 0.75))),
    Design((LayerDesign("maxpool3x3"),)),
]


@pytest.mark.parametrize("design", DESIGNS, ids=str)
def test_pruned_flops_and_params_equal_the_analytic_counts(design: Design) -> None:
    net = build_model(design, INPUT[0], CLASSES, STEM)
    assert (count_flops(net, INPUT), count_params(net)) == analytic_costs(design, pruned=False)
    prune_child(net, INPUT)
    assert (count_flops(net, INPUT), count_params(net)) == analytic_costs(design, pruned=True)
    assert net(torch.randn(5, *INPUT)).shape == (5, CLASSES)


def test_pruning_shrinks_the_tensors_themselves() -> None:
    design = DESIGNS[0]
    net = build_model(design, INPUT[0], CLASSES, STEM)
    prune_child(net, INPUT)
    widths = [conv.out_channels for conv in net.output_convs() if conv is not None]
    assert widths == [8, 8, 6]
    assert net.layers[0][0].weight.shape == (8, 16, 5, 5)
    assert net.layers[1][0].weight.shape == (8, 1, 3, 3)  # the depthwise conv follows its input
    assert net.layers[3][0].weight.shape == (6, 8, 3, 3)
    assert net.classifier.weight.shape == (CLASSES, 6)
    assert isinstance(net.layers[3][1], nn.BatchNorm2d) and net.layers[3][1].num_features == 6


def test_pruning_keeps_the_strongest_channels() -> None:
    design = Design((LayerDesign("conv3x3", 8, 0.5),))
    net = build_model(design, INPUT[0], CLASSES, STEM)
    conv, bn = net.layers[0][0], net.layers[0][1]
    with torch.no_grad():
        conv.weight.zero_()
        for keep in (1, 4, 6, 7):
            conv.weight[keep].fill_(1.0)
    kept_before = conv.weight[[1, 4, 6, 7]].clone()
    prune_child(net, INPUT)
    assert torch.equal(net.layers[0][0].weight, kept_before)
    assert bn.num_features == 4


def test_digits_split_is_seeded_and_stratified() -> None:
    a, b = DigitsDataModule(split_seed=3), DigitsDataModule(split_seed=3)
    a.setup(), b.setup()
    assert len(a.train_set) + len(a.val_set) + len(a.test_set) == 1797
    assert len(a.val_set) == len(a.test_set) == 180
    assert torch.equal(a.val_set.tensors[1], b.val_set.tensors[1])
    assert torch.bincount(a.val_set.tensors[1]).min() >= 17 and torch.bincount(a.test_set.tensors[1]).min() >= 17
    assert a.train_set.tensors[0].shape[1:] == INPUT


def test_evaluate_design_trains_prunes_and_scores_for_real() -> None:
    design = Design((LayerDesign("conv3x3", 16, 0.5), LayerDesign("conv3x3", 16, 0.5)))
    datamodule = DigitsDataModule()
    training = ChildTraining(epochs=3, finetune_epochs=1)
    first = evaluate_design(design, datamodule, training, STEM, seed=0)
    assert first.accuracy > 0.8  # chance is 0.1
    assert (first.flops, first.params) == analytic_costs(design, pruned=True)
    assert (first.flops_unpruned, first.params_unpruned) == analytic_costs(design, pruned=False)
    again = evaluate_design(design, datamodule, training, STEM, seed=0)
    assert again.accuracy == first.accuracy and again.accuracy_unpruned == first.accuracy_unpruned
    assert set(first.metrics()) >= {"accuracy", "flops", "params", "seconds/train", "seconds/prune"}
