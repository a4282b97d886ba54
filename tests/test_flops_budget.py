"""The budget-aware NasPrune env at a FLOPs budget: `mask_budget` with a `HardBudgetReward` on flops masks every choice whose cheapest completion is over it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import nasprune.envs  # noqa: F401  (registers nasprune/NasPrune-v0)
from nasprune.child import Design, SearchSpace
from nasprune.config import ConfigError

# digits: 1×8×8. Stem conv3x3 1→8: 2·64·8·1·9 = 9216 FLOPs; classifier C→10: 2·C·10.
STEM = 2 * 64 * 8 * 9
SEPCONV_TO_2 = 2 * 64 * 8 * 9 + 2 * 64 * 8 * 2  # depthwise 3×3 on 8 channels, pointwise 8→2 (width 4 pruned by half)
CONV_TO_2 = 2 * 64 * 8 * 2 * 9


def make(tiny_env_kwargs: dict, budget: float) -> gym.Env:
    reward = {"class_path": "nasprune.child.HardBudgetReward", "init_args": {"budget": budget, "cost": "flops"}}
    return gym.make("nasprune/NasPrune-v0", **{**tiny_env_kwargs, "reward": reward}, mask_budget=True).unwrapped


def test_the_cheapest_design_costs_the_stem_and_classifier(tiny_env_kwargs: dict) -> None:
    env = make(tiny_env_kwargs, 1e9)
    cheapest = env.space.cheapest_completion([], (8, 8))
    assert str(cheapest) == "maxpool3x3 | maxpool3x3"  # weightless: no FLOPs counted, the channels kept
    assert env.budget.pruned_flops(cheapest) == STEM + 2 * 8 * 10


def test_choices_that_cannot_fit_are_masked(tiny_env_kwargs: dict) -> None:
    budget = STEM + SEPCONV_TO_2 + 2 * 2 * 10  # sepconv3x3:4@0.5 then identity fits exactly; any conv3x3 does not
    env = make(tiny_env_kwargs, budget)
    obs, _ = env.reset(seed=0)
    assert obs["action_mask"].tolist() == [0, 1, 1, 1]  # conv3x3's cheapest completion: STEM + CONV_TO_2 + 40 > budget
    obs, *_ = env.step(1)  # sepconv3x3
    assert obs["action_mask"].tolist() == [1, 0, 0, 0]  # only width 4 can fit
    obs, *_ = env.step(0)
    assert obs["action_mask"].tolist() == [0, 1, 0, 0]  # only ratio 0.5
    obs, *_ = env.step(1)
    assert obs["action_mask"].tolist() == [0, 0, 1, 1]  # then only a weightless op


@pytest.mark.slow
def test_every_evaluated_child_is_within_the_budget_and_predicted_exactly(tiny_env_kwargs: dict) -> None:
    budget = STEM + CONV_TO_2 + 2 * 8 * 10
    env = make(tiny_env_kwargs, budget)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        assert "error" not in info
        assert info["flops"] <= budget
        assert info["flops"] == env.budget.pruned_flops(Design.from_dict(info["design"]))  # the mask's count is the pruned child's


def test_a_budget_no_design_meets_is_refused(tiny_env_kwargs: dict) -> None:
    with pytest.raises(ConfigError) as err:
        make(tiny_env_kwargs, STEM + 2 * 8 * 10 - 1)
    assert err.value.key == "mask_budget" and "out of reach" in err.value.detail


def test_the_cheapest_completion_extends_itself() -> None:
    """Completing a prefix plus its completion's next choice gives the same design: a choice the mask
    allows always leaves a next choice it allows."""
    space = SearchSpace(
        num_layers=4, ops=("conv3x3", "sepconv5x5", "maxpool3x3", "identity"), widths=(8, 16), prune_ratios=(0.0, 0.5),
        downsample=("none", "stride", "maxpool"), skips=True,
    )
    rng = np.random.default_rng(0)
    for _ in range(20):
        prefix: list[int] = []
        cut = int(rng.integers(len(space.decisions)))
        for step in range(cut):
            prefix.append(int(rng.choice(np.flatnonzero(space.action_mask(step, prefix, (28, 28))))))
        completion = space.cheapest_completion(prefix, (28, 28))
        assert completion == space.cheapest_completion(prefix + [space._cheapest_choice(cut, prefix, (28, 28))], (28, 28))
        assert all(layer.skip is None for layer in completion.layers[space.decisions[cut].layer + 1 :])


def test_a_grid_head_flattens_the_pooled_map_and_prunes_with_it() -> None:
    """head_grid 2 on digits: the classifier reads 2×2 cells of every channel; pruning the last conv
    removes its channels' four inputs each, and the pruned FLOPs are what `Design.pruned` predicts."""
    import torch

    from nasprune.child import LayerDesign, build_model, count_flops, prune_child

    design = Design((LayerDesign("conv3x3", 8, 0.5),), head_grid=2)
    assert Design.from_json(design.to_json()) == design and str(design) == "conv3x3:8@0.5 | head2x2"
    net = build_model(design, 1, 10, stem_width=8)
    assert net.classifier.in_features == 8 * 4
    conv = 2 * 64 * 8 * 8 * 9
    assert count_flops(net, (1, 8, 8)) == STEM + conv + 2 * 32 * 10
    prune_child(net, (1, 8, 8))
    assert net.classifier.in_features == 4 * 4
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    pruned = build_model(design.pruned(), 1, 10, stem_width=8)
    assert count_flops(net, (1, 8, 8)) == count_flops(pruned, (1, 8, 8)) == STEM + conv // 2 + 2 * 16 * 10


def test_the_space_gives_every_design_its_head() -> None:
    space = SearchSpace(num_layers=1, ops=("conv3x3",), widths=(8,), prune_ratios=(0.0,), head_grid=4)
    assert space.design_from_actions([0, 0, 0]).head_grid == 4
    assert Design.from_dict({"layers": [{"op": "identity"}]}).head_grid == 1  # designs recorded before the head keep theirs


def test_a_flops_budget_masks_behind_the_prune_switch() -> None:
    """Switched off, a design must fit the budget unpruned, so a wide first conv is masked that is open with pruning on."""
    from nasprune.child.budget import FlopsCeiling

    space = SearchSpace(num_layers=2, ops=("conv3x3", "maxpool3x3"), widths=(8, 32), prune_ratios=(0.0, 0.75), stem_width=8, prune_switch=True)
    conv_8_to_32 = 2 * 64 * 8 * 32 * 9
    ceiling = FlopsCeiling(space, (1, 8, 8), 10, STEM + conv_8_to_32 // 2 + 2 * 8 * 10)  # conv3x3:32 fits pruned by 0.75 only
    off, on, conv3x3, width_32 = 0, 1, 0, 1
    assert ceiling(0, []) == [True, True]
    assert ceiling(2, [off, conv3x3]) == [True, False]
    assert ceiling(2, [on, conv3x3]) == [True, True]
    assert ceiling(3, [on, conv3x3, width_32]) == [False, True]
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions: list[int] = []
        for step in range(len(space.decisions)):
            actions.append(int(rng.choice(np.flatnonzero(ceiling(step, actions)))))
        assert ceiling.pruned_flops(space.design_from_actions(actions)) <= ceiling.high


def test_a_params_window_refuses_the_prune_switch() -> None:
    from nasprune.child.budget import BudgetMask

    space = SearchSpace(num_layers=2, ops=("conv3x3",), widths=(8,), prune_switch=True)
    with pytest.raises(ConfigError) as err:
        BudgetMask(space, 1, 10, "params", 0, 1e6)
    assert err.value.key == "mask_budget" and "prune_switch" in err.value.detail
