from __future__ import annotations

import pytest
import torch
from torch import nn

import analytic
from nasprune.child import (
    ChildTraining,
    Design,
    DigitsDataModule,
    EvalResult,
    LayerDesign,
    build_model,
    count_flops,
    count_params,
    count_zeros,
    evaluate_design,
    model_size_bytes,
    prune_child,
)
from nasprune.config import ConfigError

INPUT = (1, 8, 8)
CLASSES = 10
STEM = 16


def analytic_costs(design: Design, pruned: bool) -> tuple[int, int]:
    return analytic.analytic_costs(design, INPUT, CLASSES, STEM, pruned)


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
    assert net.layers[0].op[0].weight.shape == (8, 16, 5, 5)
    assert net.layers[1].op[0].weight.shape == (8, 1, 3, 3)  # the depthwise conv follows its input
    assert net.layers[3].op[0].weight.shape == (6, 8, 3, 3)
    assert net.classifier.weight.shape == (CLASSES, 6)
    assert isinstance(net.layers[3].op[1], nn.BatchNorm2d) and net.layers[3].op[1].num_features == 6


def test_pruning_keeps_the_strongest_channels() -> None:
    design = Design((LayerDesign("conv3x3", 8, 0.5),))
    net = build_model(design, INPUT[0], CLASSES, STEM)
    conv, bn = net.layers[0].op[0], net.layers[0].op[1]
    with torch.no_grad():
        conv.weight.zero_()
        for keep in (1, 4, 6, 7):
            conv.weight[keep].fill_(1.0)
    kept_before = conv.weight[[1, 4, 6, 7]].clone()
    prune_child(net, INPUT)
    assert torch.equal(net.layers[0].op[0].weight, kept_before)
    assert bn.num_features == 4


def test_digits_split_is_seeded_and_stratified() -> None:
    a, b = DigitsDataModule(split_seed=3), DigitsDataModule(split_seed=3)
    a.setup(), b.setup()
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (1078, 360, 359)
    assert torch.equal(a.test_set.tensors[1], b.test_set.tensors[1])
    assert torch.bincount(a.test_set.tensors[1]).min() >= 35
    assert len(a.test_dataloader().dataset) == 359
    assert torch.equal(a.val_set.tensors[1], b.val_set.tensors[1])
    assert torch.bincount(a.val_set.tensors[1]).min() >= 35
    assert a.train_set.tensors[0].shape[1:] == INPUT


def test_evaluate_design_trains_prunes_and_scores_for_real() -> None:
    design = Design((LayerDesign("conv3x3", 16, 0.5), LayerDesign("conv3x3", 16, 0.5)))
    datamodule = DigitsDataModule()
    training = ChildTraining(epochs=3, finetune_epochs=1)
    first = evaluate_design(design, datamodule, training, STEM, seed=0)
    assert first.accuracy_unpruned > 0.8  # chance is 0.1
    assert first.accuracy > 0.5  # three epochs, halved, one epoch of fine-tuning
    assert first.size_bytes == model_size_bytes(first.model) < first.size_bytes_unpruned
    assert first.sparsity == 0.0 and first.latency_ms is None and "latency_ms" not in first.metrics()
    assert (first.flops, first.params) == analytic_costs(design, pruned=True)
    assert (first.flops_unpruned, first.params_unpruned) == analytic_costs(design, pruned=False)
    again = evaluate_design(design, datamodule, training, STEM, seed=0)
    assert again.accuracy == first.accuracy and again.accuracy_unpruned == first.accuracy_unpruned
    assert set(first.metrics()) >= {"accuracy", "flops", "params", "seconds/train", "seconds/prune"}


RICH = Design((
    LayerDesign("conv3x3", 16, 0.5, skip=0, skip_mode="concat"),
    LayerDesign("sepconv5x5", 16, 0.25, "stride", skip=1),
    LayerDesign("conv3x3", 16, 0.5, "maxpool", skip=2, skip_mode="concat"),
))
RICH_TRAINING = ChildTraining(
    epochs=2,
    finetune_epochs=1,
    optimizer="sgd",
    lr=0.05,
    lr_scheduler="cosine",
    importance="taylor",
    sparsity=0.5,
    sparsity_schedule="agp",
    distill_alpha=0.7,
    distill_temperature=3.0,
    latency_batch_size=16,
    latency_repeats=3,
)


@pytest.fixture(scope="module")
def rich_result() -> EvalResult:
    return evaluate_design(RICH, DigitsDataModule(), RICH_TRAINING, STEM, seed=0)


def test_a_skip_design_with_every_option_trains_prunes_and_scores(rich_result: EvalResult) -> None:
    result = rich_result
    assert result.accuracy_unpruned > 0.7 and result.accuracy > 0.3
    assert (result.flops, result.params) == analytic_costs(RICH, pruned=True)  # unstructured zeros change no dense cost
    zeros, weights = count_zeros(result.model)
    assert result.sparsity == zeros / weights
    assert result.sparsity == pytest.approx(0.5, abs=0.005)  # AGP reached s_f = 0.5 by the last step (per-layer rounding)
    assert result.latency_ms > 0 and result.metrics()["latency_ms"] == result.latency_ms
    assert {"seconds/train", "seconds/prune", "seconds/finetune", "seconds/score", "seconds/latency"} <= set(result.metrics())
    assert not any(hasattr(m, "weight_orig") for m in result.model.modules())  # masks folded into the weights


def test_a_collapsing_design_fails_before_training() -> None:
    design = Design(tuple(LayerDesign("conv3x3", 8, downsample="maxpool") for _ in range(4)))  # 8 → 4 → 2 → 1 → 0
    with pytest.raises(ValueError, match="layer 3 .* downsamples a 1×1 feature map"):
        evaluate_design(design, DigitsDataModule(), ChildTraining(epochs=50), STEM, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"importance": "l3"}, "importance"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"lr_scheduler": "linear"}, "lr_scheduler"),
        ({"sparsity_schedule": "cubic"}, "sparsity_schedule"),
    ],
)
def test_bad_training_settings_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        ChildTraining(**kwargs)
    assert err.value.key == key
