from __future__ import annotations

import json

import pytest

from nasprune.child import Design, LayerDesign, SearchSpace
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
    assert space.valid_choices(1, [space.ops.index("identity")]) == 1
    assert space.valid_choices(2, [space.ops.index("identity"), 0]) == 1
    assert space.valid_choices(1, [space.ops.index("conv5x5")]) == len(space.widths)


def test_pruned_width_follows_torch_pruning_rounding() -> None:
    assert LayerDesign("conv3x3", 32, 0.75).pruned_width == 8
    assert LayerDesign("conv3x3", 10, 0.25).pruned_width == 7
    assert LayerDesign("identity", 32, 0.75).pruned_width is None


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"ops": ["conv3x3", "conv7x7"]}, "ops", "unknown op 'conv7x7'"),
        ({"ops": []}, "ops", "empty"),
        ({"widths": []}, "widths", "empty"),
        ({"prune_ratios": []}, "prune_ratios", "empty"),
        ({"prune_ratios": [0.0, 1.0]}, "prune_ratios", "outside [0, 1)"),
        ({"prune_ratios": [-0.1]}, "prune_ratios", "outside [0, 1)"),
        ({"widths": [8, 0]}, "widths", "positive"),
        ({"widths": [8, -4]}, "widths", "positive"),
        ({"num_layers": 0}, "num_layers", "positive"),
        ({"widths": [1], "prune_ratios": [0.0, 0.5]}, "prune_ratios", "0 channels"),
        ({"kernel": 3}, "kernel", "unknown search-space key"),
    ],
)
def test_bad_search_space_names_the_key(config: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_config(config)
    assert err.value.key == key
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
