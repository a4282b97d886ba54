from __future__ import annotations

import json

import numpy as np
import pytest

from nasprune.child import Design, LayerDesign, SearchSpace
from nasprune.child.search_space import WHOLE_DESIGN
from nasprune.config import ConfigError


def test_decisions_are_op_width_ratio_per_layer() -> None:
    space = SearchSpace.from_config({"num_layers": 2, "ops": ["conv3x3", "identity"], "widths": [8, 16, 32]})
    assert [(d.layer, d.field) for d in space.decisions] == [
        (0, "op"), (0, "width"), (0, "prune_ratio"), (1, "op"), (1, "width"), (1, "prune_ratio"),
    ]
    assert space.max_choices == 4  # four prune ratios by default


def test_design_from_actions_and_json_round_trip() -> None:
    space = SearchSpace.from_config({"num_layers": 2})
    design = space.design_from_actions([0, 2, 1, 2, 0, 3])
    assert design == Design((LayerDesign("conv3x3", 32, 0.25), LayerDesign("sepconv3x3", 8, 0.75)))
    assert Design.from_json(design.to_json()) == design
    assert json.loads(design.to_json()) == design.to_dict()
    assert str(design) == "conv3x3:32@0.25 | sepconv3x3:8@0.75"


def test_equivalent_encodings_are_one_canonical_design() -> None:
    space = SearchSpace.from_config({"num_layers": 1})
    pool = space.ops.index("maxpool3x3")
    a = space.design_from_actions([pool, 0, 0])
    b = space.design_from_actions([pool, 2, 3])
    assert a == b and hash(a) == hash(b) and a.to_json() == b.to_json()
    assert a.layers[0].width is None and a.layers[0].prune_ratio == 0.0
    assert len({a, b, space.design_from_actions([0, 0, 0])}) == 2


def test_weightless_op_leaves_one_valid_choice() -> None:
    space = SearchSpace.from_config({"num_layers": 1})
    assert space.action_mask(1, [space.ops.index("identity")]) == [True, False, False]
    assert sum(space.action_mask(2, [space.ops.index("identity"), 0])) == 1
    assert sum(space.action_mask(1, [space.ops.index("conv5x5")])) == len(space.widths)


def test_pruned_width_follows_torch_pruning_rounding() -> None:
    assert LayerDesign("conv3x3", 32, 0.75).pruned_width == 8
    assert LayerDesign("conv3x3", 10, 0.25).pruned_width == 7
    assert LayerDesign("identity", 32, 0.75).pruned_width is None


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"ops": ["conv3x3", "dilconv3x3"]}, "ops", "unknown op 'dilconv3x3'"),
        ({"ops": ["conv4x4"]}, "ops", "must be odd"),
        ({"ops": ["conv3x5"]}, "ops", "unknown op 'conv3x5'"),
        ({"downsample": ["stride"]}, "downsample", "must start with 'none'"),
        ({"ops": []}, "ops", "empty"),
        ({"widths": []}, "widths", "empty"),
        ({"prune_ratios": []}, "prune_ratios", "empty"),
        ({"widths": [1], "prune_ratios": [0.0, 0.5]}, "prune_ratios", "0 channels"),
    ],
)
def test_bad_search_space_names_the_key(config: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config(config)
    assert err.value.key == key
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


RICH = {
    "num_layers": 3,
    "ops": ["conv3x3", "sepconv5x5", "avgpool3x3", "identity"],
    "widths": [8, 16],
    "prune_ratios": [0.0, 0.5],
    "downsample": ["none", "stride", "maxpool"],
    "skips": True,
    "skip_modes": ["add", "concat"],
}


def test_rich_space_decisions_and_skip_anchors() -> None:
    space = SearchSpace.from_config(RICH)
    fields = [d.field for d in space.decisions if d.layer == 0]
    assert fields == ["op", "width", "prune_ratio", "downsample", "skip", "skip_mode"]
    skips = [d.choices for d in space.decisions if d.field == "skip"]
    assert skips == [(None, 0), (None, 0, 1), (None, 0, 1, 2)]  # a layer may reach back to any earlier map
    assert space.max_choices == 4
    # conv3x3:16@0.5 strided, skip from h0 concatenated | identity /maxpool | sepconv5x5:8@0 with an added skip from h1
    actions = [0, 1, 1, 1, 1, 1, 3, 0, 0, 2, 0, 0, 1, 0, 0, 0, 2, 0]
    design = space.design_from_actions(actions)
    assert str(design) == "conv3x3:16@0.5/2&h0 | identity/maxpool | sepconv5x5:8@0+h1"
    assert design.layers[2] == LayerDesign("sepconv5x5", 8, 0.0, skip=1, skip_mode="add")
    assert design.layers[0].kernel_size == 3 and design.layers[2].kernel_size == 5 and design.layers[2].family == "sepconv"
    assert Design.from_json(design.to_json()) == design
    assert design.feature_sizes((7, 7)) == [(7, 7), (4, 4), (2, 2), (2, 2)]  # a stride gives ⌈n/2⌉, a 2×2 pool ⌊n/2⌋


def test_masks_follow_the_earlier_decisions() -> None:
    space = SearchSpace.from_config(RICH)
    identity, conv = space.ops.index("identity"), space.ops.index("conv3x3")
    # layer 0 identity: one width, one ratio, no stride (an identity cannot stride), no skip, one skip mode
    assert space.action_mask(1, [identity]) == [True, False]
    assert space.action_mask(3, [identity, 0, 0]) == [True, False, True]
    assert space.action_mask(4, [identity, 0, 0, 0]) == [True, False]
    assert space.action_mask(5, [identity, 0, 0, 0, 0]) == [True, False]
    # a conv with a skip picks its mode; without one the mode cannot matter
    assert space.action_mask(5, [conv, 0, 0, 0, 1]) == [True, True]
    assert space.action_mask(5, [conv, 0, 0, 0, 0]) == [True, False]
    assert space.action_mask(3, [conv, 0, 0], input_size=(8, 8)) == [True, True, True]


def test_downsampling_a_one_by_one_map_is_masked_out() -> None:
    space = SearchSpace.from_config(RICH)
    conv = space.ops.index("conv3x3")
    layer = [conv, 0, 0, 1, 0, 0]  # conv3x3:8, strided, no skip
    assert space.action_mask(9, layer + [conv, 0, 0], input_size=(2, 2)) == [True, False, False]  # 2 → 1: stop there
    assert space.action_mask(9, layer + [conv, 0, 0], input_size=(3, 3)) == [True, True, True]  # 3 → 2: still room
    assert space.action_mask(3, [conv, 0, 0], input_size=(1, 5)) == [True, False, False]


def test_a_collapsing_hand_made_design_is_caught_with_the_reason() -> None:
    design = Design((LayerDesign("conv3x3", 8, downsample="maxpool"), LayerDesign("conv3x3", 8, downsample="stride")))
    with pytest.raises(ValueError, match=r"layer 1 \(conv3x3:8@0/2\) downsamples a 1×1 feature map"):
        design.feature_sizes((3, 3))
    assert design.feature_sizes((4, 4)) == [(4, 4), (2, 2), (1, 1)]


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        ({"op": "conv3x3", "width": 8, "skip": 1}, "only h0..h0 exist"),
        ({"op": "identity", "downsample": "stride"}, "cannot stride"),
        ({"op": "conv3x3", "width": 8, "downsample": "pool"}, "unknown downsample"),
        ({"op": "conv3x3", "width": 8, "skip": 0, "skip_mode": "mul"}, "unknown skip mode"),
    ],
)
def test_invalid_layer_designs_are_refused(layer: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Design.from_dict({"layers": [layer]})


def test_skip_and_downsample_are_canonical_and_old_json_still_reads() -> None:
    assert LayerDesign("identity", 8, 0.5, skip=0, skip_mode="concat") == LayerDesign("identity")
    assert LayerDesign("conv3x3", 8, skip=None, skip_mode="concat") == LayerDesign("conv3x3", 8)
    old = '{"layers":[{"op":"conv3x3","prune_ratio":0.5,"width":32}]}'
    assert Design.from_json(old).to_json() == old


def test_a_fixed_architecture_searches_only_the_prune_ratios() -> None:
    space = SearchSpace.from_config({
        "architecture": [
            {"op": "conv3x3", "width": 32},
            {"op": "maxpool3x3", "downsample": "stride"},
            {"op": "sepconv5x5", "width": 64, "skip": 1, "skip_mode": "concat"},
        ],
        "prune_ratios": [0.0, 0.25, 0.5],
    })
    assert [(d.layer, d.field) for d in space.decisions] == [(0, "prune_ratio"), (2, "prune_ratio")]
    assert space.action_mask(1, [2]) == [True, True, True]
    design = space.design_from_actions([1, 2])
    assert str(design) == "conv3x3:32@0.25 | maxpool3x3/2 | sepconv5x5:64@0.5&h1"
    assert [str(d) for d in space.largest_designs()] == ["conv3x3:32@0 | maxpool3x3/2 | sepconv5x5:64@0&h1"]


@pytest.mark.parametrize(
    ("architecture", "fragment"),
    [
        ([{"op": "conv3x3"}], "needs a width"),
        ([{"op": "identity"}], "no weighted layer"),
        ([], "non-empty list"),
        ([{"op": "conv3x3", "width": 8, "kernel": 3}], "kernel"),
    ],
)
def test_bad_architecture_names_the_key(architecture: list, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config({"architecture": architecture})
    assert err.value.key == "architecture" and fragment in str(err.value)


def random_design(space: SearchSpace, rng: np.random.Generator) -> tuple[list[int], Design]:
    """A design drawn uniformly among the valid choices of each decision (an untrained policy)."""
    actions: list[int] = []
    for step in range(len(space.decisions)):
        actions.append(int(rng.choice(np.flatnonzero(space.action_mask(step, actions, (28, 28))))))
    return actions, space.design_from_actions(actions)


SWITCHED = {"num_layers": 4, "ops": ["conv3x3", "sepconv5x5", "maxpool3x3"], "widths": [8, 16], "downsample": ["none", "stride"]}


def test_the_prune_switch_decides_first_and_off_masks_every_ratio_to_zero() -> None:
    space = SearchSpace.from_config({**SWITCHED, "prune_switch": True})
    plain = SearchSpace.from_config(SWITCHED)
    assert (space.decisions[0].layer, space.decisions[0].field, space.decisions[0].choices) == (WHOLE_DESIGN, "prune", (False, True))
    assert space.decisions[1:] == plain.decisions
    off, on = 0, 1
    assert space.action_mask(3, [off, 0, 1]) == [True, False, False, False]  # conv3x3:16's ratio
    assert space.action_mask(3, [on, 0, 1]) == [True, True, True, True]
    rng = np.random.default_rng(0)
    for _ in range(50):
        actions, design = random_design(space, rng)
        assert design == plain.design_from_actions(actions[1:])  # the switch itself is no field of the design
        if actions[0] == off:
            assert all(layer.prune_ratio == 0.0 for layer in design.layers)


def test_the_prune_switch_gives_unpruned_designs_half_an_untrained_policy_s_mass() -> None:
    """Layer by layer an unpruned design of four conv layers is one in 4^4; behind the switch it is at least half."""
    rng = np.random.default_rng(0)

    def unpruned_share(space: SearchSpace) -> float:
        designs = [random_design(space, rng)[1] for _ in range(2000)]
        return sum(all(layer.prune_ratio == 0.0 for layer in d.layers) for d in designs) / len(designs)

    convs = {**SWITCHED, "ops": ["conv3x3"]}
    assert unpruned_share(SearchSpace.from_config(convs)) == pytest.approx(0.25**4, abs=0.01)
    assert unpruned_share(SearchSpace.from_config({**convs, "prune_switch": True})) == pytest.approx(0.5 + 0.5 * 0.25**4, abs=0.03)


@pytest.mark.parametrize("ratios", [[0.0], [0.25, 0.5]])
def test_a_prune_switch_without_a_choice_of_zero_and_more_is_refused(ratios: list[float]) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config({**SWITCHED, "prune_ratios": ratios, "prune_switch": True})
    assert err.value.key == "prune_switch"


def test_a_fixed_architecture_behind_the_switch_is_searched_or_left_whole() -> None:
    space = SearchSpace.from_config({"architecture": [{"op": "conv3x3", "width": 32}, {"op": "conv3x3", "width": 16}], "prune_switch": True})
    assert [(d.layer, d.field) for d in space.decisions] == [(WHOLE_DESIGN, "prune"), (0, "prune_ratio"), (1, "prune_ratio")]
    assert space.action_mask(2, [0, 0]) == [True, False, False, False]
    assert str(space.design_from_actions([1, 2, 3])) == "conv3x3:32@0.5 | conv3x3:16@0.75"
