"""Bit-widths in the search: the decision and its mask, the costs by hand, quantization-aware fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from nasprune.child import (
    ChildTraining,
    Design,
    DigitsDataModule,
    LayerDesign,
    SearchSpace,
    add_fake_quant,
    bitops,
    build_model,
    evaluate_design,
    remove_fake_quant,
    size_bits,
)
from nasprune.child.rewards import LinearReward
from nasprune.cli import run
from nasprune.config import ConfigError
from nasprune.envs.nasprune_env import NasPruneEnv

INPUT = (1, 8, 8)


def small_design(bits: int | None) -> Design:
    """stem 1→4 (3×3) | conv3x3 4→8 with an added skip from h0 (1×1 projection 4→8) | maxpool | linear 8→10."""
    return Design((LayerDesign("conv3x3", 8, skip=0, bits=bits), LayerDesign("maxpool3x3")))


def test_size_bits_and_bitops_by_hand() -> None:
    # weights: stem 1·4·9 = 36, conv 4·8·9 = 288, projection 4·8 = 32, classifier 8·10 = 80;
    # other parameters (BN γ,β: 4+8+8 channels; classifier bias 10) = 50, always 32 bits.
    # MACs on the 8×8 map: stem 36·64 = 2304, conv 288·64 = 18432, projection 32·64 = 2048, classifier 80.
    quantized = build_model(small_design(4), 1, 10, stem_width=4)
    # stem and classifier at 8 bits, the layer's two convolutions at 4
    assert size_bits(quantized) == 36 * 8 + 288 * 4 + 32 * 4 + 80 * 8 + 50 * 32 == 3808
    # 8-bit activations into every quantized layer
    assert bitops(quantized, INPUT) == 2304 * 8 * 8 + 18432 * 4 * 8 + 2048 * 4 * 8 + 80 * 8 * 8 == 807936
    plain = build_model(small_design(None), 1, 10, stem_width=4)
    assert size_bits(plain) == 32 * (36 + 288 + 32 + 80 + 50) == 15552
    assert bitops(plain, INPUT) == 32 * 32 * (2304 + 18432 + 2048 + 80) == 23412736
    add_fake_quant(quantized)  # the costs read shapes and bits, not the (parametrized) tensors
    assert (size_bits(quantized), bitops(quantized, INPUT)) == (3808, 807936)


def test_the_bit_width_decision_is_masked_for_weightless_ops() -> None:
    space = SearchSpace(num_layers=2, ops=("conv3x3", "maxpool3x3"), widths=(4,), prune_ratios=(0.0, 0.5), bits=(8, 4))
    assert [(d.layer, d.field) for d in space.decisions] == [
        (0, "op"), (0, "width"), (0, "prune_ratio"), (0, "bits"), (1, "op"), (1, "width"), (1, "prune_ratio"), (1, "bits"),
    ]
    assert space.action_mask(3, [0, 0, 1]) == [True, True]  # conv: 8 or 4 bits
    assert space.action_mask(7, [0, 0, 1, 1, 1, 0, 0]) == [True, False]  # maxpool: only the first choice
    design = space.design_from_actions([0, 0, 1, 1, 1, 0, 0, 0])
    assert [layer.bits for layer in design.layers] == [4, None]
    assert str(design) == "conv3x3:4@0.5w4 | maxpool3x3"
    assert LayerDesign("maxpool3x3", bits=4) == LayerDesign("maxpool3x3")  # normalised away
    assert Design.from_json(design.to_json()) == design
    assert "bits" not in LayerDesign("conv3x3", 4).to_dict()  # float designs keep their JSON
    assert space.largest_designs()[0].layers[0].bits == 8


def test_a_fixed_architecture_searches_ratio_and_bits_of_weighted_layers() -> None:
    space = SearchSpace(
        prune_ratios=(0.0, 0.5), bits=(8, 4), architecture=[{"op": "conv3x3", "width": 8}, {"op": "maxpool3x3"}, {"op": "conv3x3", "width": 4}]
    )
    assert [(d.layer, d.field) for d in space.decisions] == [(0, "prune_ratio"), (0, "bits"), (2, "prune_ratio"), (2, "bits")]
    design = space.design_from_actions([1, 1, 0, 0])
    assert [(layer.prune_ratio, layer.bits) for layer in design.layers] == [(0.5, 4), (0.0, None), (0.0, 8)]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("--data.env_kwargs.search_space.bits=[16]", "BitWidth"),
        ("--data.env_kwargs.search_space.bits=[8,1]", "BitWidth"),
        ("--data.env_kwargs.training.quantize=int4", "Got value: int4"),
        ("--data.env_kwargs.training.calibration_images=0", "PositiveInt"),
    ],
)
def test_bad_quantization_settings_are_one_line_naming_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        run(["fit", "-c", "configs/digits.yaml", override, "--print_config"])
    assert err.value.key == "data.env_kwargs." + override.split("=")[0].removeprefix("--data.env_kwargs.")
    assert fragment in err.value.detail and "\n" not in str(err.value)


def test_duplicate_bit_widths_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^bits: has duplicate values \[8, 8\]"):
        SearchSpace.from_config({"bits": [8, 8]})


def test_env_with_bits_passes_check_env_and_rewards_on_size_bits() -> None:
    env = NasPruneEnv(
        search_space={"num_layers": 1, "ops": ["conv3x3", "identity"], "widths": [4], "prune_ratios": [0.0], "bits": [8, 4], "stem_width": 4},
        training={"epochs": 1, "finetune_epochs": 0},
        reward=LinearReward(beta=0.5, cost="size_bits"),
    )
    check_env(env, skip_render_check=True)
    # the reference is the largest design at 8 bits: stem 36·8 + conv 144·8 + classifier 40·8, 8+8+10 others at 32
    assert env.reward_fn.cost_ref == 36 * 8 + 144 * 8 + 40 * 8 + 26 * 32
    env.reset(seed=0)
    for action in (0, 0, 0, 1):  # conv3x3, width 4, ratio 0, 4 bits
        _, reward, done, _, info = env.step(action)
    assert done and info["size_bits"] == 36 * 8 + 144 * 4 + 40 * 8 + 26 * 32
    assert reward == pytest.approx(info["accuracy"] - 0.5 * info["size_bits"] / env.reward_fn.cost_ref)


@pytest.mark.slow
def test_quantization_aware_fine_tuning_leaves_weights_on_their_grids() -> None:
    design = Design((LayerDesign("conv3x3", 16, 0.5, bits=4), LayerDesign("conv3x3", 8, bits=2)))
    result = evaluate_design(design, DigitsDataModule(), ChildTraining(epochs=2, finetune_epochs=1), stem_width=8, seed=0)
    net = result.model
    assert not any(hasattr(m, "input_quant") or hasattr(m, "parametrizations") for m in net.modules())  # a plain net again
    for conv, bits in ((net.layers[0].op[0], 4), (net.layers[1].op[0], 2), (net.stem[0], 8), (net.classifier, 8)):
        weight = conv.weight.detach().flatten(1)
        steps = weight / (weight.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1))
        assert torch.allclose(steps, steps.round(), atol=1e-3)  # every weight an integer step of its channel's scale
        assert steps.abs().max() <= 2 ** (bits - 1) - 1 + 1e-3
    assert result.size_bits == size_bits(net) < 32 * result.params
    assert result.bitops == bitops(net, INPUT)
    assert result.accuracy > 0.5  # 4- and 2-bit layers still learn the digits


def test_fake_quant_can_be_removed_after_a_forward() -> None:
    net = add_fake_quant(build_model(small_design(4), 1, 10, stem_width=4))
    x = torch.randn(4, *INPUT)
    net.train()
    net(x)
    net.eval()
    with torch.no_grad():
        fake = net(x)
        remove_fake_quant(net)
        baked = net(x)
    # the weights are the fake-quantized ones; only the 8-bit rounding of the inputs is gone
    assert np.corrcoef(fake.flatten(), baked.flatten())[0, 1] > 0.99
    assert set(net.state_dict()) == set(build_model(small_design(4), 1, 10, stem_width=4).state_dict())


def test_bits_and_unstructured_sparsity_fail_before_any_search() -> None:
    with pytest.raises(ConfigError, match=r"^training\.sparsity: unstructured sparsity does not combine with search_space\.bits"):
        NasPruneEnv(search_space={"bits": [8, 4]}, training={"sparsity": 0.5})
