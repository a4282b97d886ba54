from __future__ import annotations

import copy
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from conftest import REPO, TINY_ENV_KWARGS
from nasprune.child import LayerDesign, build_model, prune_child
from nasprune.child.budget import BudgetMask
from nasprune.child.quantize import size_bits
from nasprune.child.search_space import Design, SearchSpace
from nasprune.cli import main, run
from nasprune.config import ConfigError

# One layer after a 1 → 4 stem, 10 classes. size_bits by hand (weights at their bits, BN and biases at 32;
# stem and classifier weights at 8 bits once any layer is quantized):
#   maxpool3x3 (float):  stem 36·32 + 8·32 = 1,408; classifier 40·32 + 10·32 = 1,600          → 3,008
#   conv 4 → 8, w4:      stem 36·8 + 256 = 544; conv 288·4 + BN 16·32 = 1,664; fc 80·8 + 320 = 960 → 3,168
#   conv 4 → 8, w8:      544 + (288·8 + 512) + 960                                                  → 4,320
#   conv 4 → 4, w4 / w8: 544 + (144·4 | 144·8) + 256 + (40·8 + 320)                               → 2,016 / 2,592
#   conv 4 → 16, w4:     544 + (576·4 + 1,024) + (160·8 + 320)                                     → 5,472
ONE_LAYER = SearchSpace(num_layers=1, ops=("conv3x3", "maxpool3x3"), widths=(8, 16), prune_ratios=(0.0, 0.5), bits=(8, 4), stem_width=4)


def test_hand_computed_costs_decide_the_mask() -> None:
    mask = BudgetMask(ONE_LAYER, 1, 10, "size_bits", 3_000, 3_500)  # holds 3,008 (pool) and 3,168 (8 channels at 4 bits)
    # decisions: op, width, prune ratio, bits
    assert mask(0, []) == [True, True]
    assert mask(1, [0]) == [True, True]  # 8@0 and 16@0.5 both leave 8 channels
    assert mask(2, [0, 0]) == [True, False]  # 8@0.5 leaves 4 channels: 2,016 or 2,592, below the window
    assert mask(2, [0, 1]) == [False, True]  # 16@0: 5,472 at best
    assert mask(3, [0, 0, 0]) == [False, True]  # 8 bits: 4,320
    assert mask(1, [1]) == [True, True]  # a pool's width cannot matter (the space masks it to the first)
    params = BudgetMask(ONE_LAYER, 1, 10, "params", 0, 44 + 10 * 4 + 10)  # the pool alone: stem 44, fc 50
    assert params(0, []) == [False, True]


def test_a_pruned_child_costs_what_the_mask_counts() -> None:
    """torch-pruning's physical pruning leaves the cost of the design built at its pruned widths."""
    space = SearchSpace(num_layers=2, ops=("conv3x3", "sepconv3x3"), widths=(8, 16), prune_ratios=(0.0, 0.5, 0.75), bits=(8, 4), stem_width=4)
    design = Design((LayerDesign("sepconv3x3", 16, 0.75, bits=4), LayerDesign("conv3x3", 16, 0.5, bits=8)))
    pruned = size_bits(prune_child(build_model(design, 1, 10, 4), (1, 12, 12)))
    mask = BudgetMask(space, 1, 10, "size_bits", pruned, pruned)
    assert mask(4, [1, 1, 2, 1]) == [True, False]  # after sepconv3x3:16@0.75w4 only conv3x3 reaches the exact cost
    assert mask(7, [1, 1, 2, 1, 0, 1, 1]) == [True, False]  # and at 8 bits, not 4


def test_bad_budgets_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="^mask_budget: masks a window of params or size_bits exactly; the reward's cost is flops$"):
        BudgetMask(ONE_LAYER, 1, 10, "flops", 0, 1)
    with pytest.raises(ConfigError, match="^mask_budget: no design of the search space has size_bits within \\[10, 20\\]$"):
        BudgetMask(ONE_LAYER, 1, 10, "size_bits", 10, 20)
    with pytest.raises(ConfigError, match="^mask_budget: needs a search space without skips"):
        BudgetMask(SearchSpace(skips=True), 1, 10, "params", 0, 1e9)


def window_kwargs(target: float) -> dict:
    kwargs = copy.deepcopy(TINY_ENV_KWARGS)
    kwargs["mask_budget"] = True
    kwargs["reward"] = {"class_path": "nasprune.child.TargetWindowReward", "init_args": {"target": target, "tolerance": 0.1, "cost": "params"}}
    return kwargs


def test_env_masks_to_the_window_and_checks() -> None:
    env = gym.make("nasprune/NasPrune-v0", **window_kwargs(1_000))
    check_env(env.unwrapped, skip_render_check=True)
    low, high = 900, 1_100
    rng = np.random.default_rng(0)
    space = env.unwrapped.space
    for _ in range(20):
        obs, _ = env.reset()
        actions: list[int] = []
        for step in range(len(space.decisions)):
            actions.append(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            if step < len(space.decisions) - 1:
                obs, *_ = env.step(actions[-1])
        design = space.design_from_actions(actions)
        net = prune_child(build_model(design, 1, 10, space.stem_width), (1, 8, 8))
        assert low <= sum(p.numel() for p in net.parameters()) <= high, design


def test_env_refuses_a_reward_without_a_window() -> None:
    kwargs = copy.deepcopy(TINY_ENV_KWARGS)
    with pytest.raises(ConfigError, match="^mask_budget: needs a TargetWindowReward or HardBudgetReward \\(its budget is masked\\), got LinearReward$"):
        gym.make("nasprune/NasPrune-v0", mask_budget=True, **kwargs)


def test_cli_search_stays_in_the_window(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(window_kwargs(1_000))
    path = tmp_path / "window.yaml"
    path.write_text(yaml.safe_dump(config))
    run(["fit", "-c", str(path), "--trainer.max_steps=2", "--data.episodes_per_update=3", f"--trainer.default_root_dir={tmp_path}",
         "--trainer.enable_progress_bar=false", "--export.enabled=false", "--seed_everything=0"])
    (history,) = tmp_path.glob("lightning_logs/version_*/history.jsonl")
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(records) == 6 and all(900 <= r["params"] <= 1_100 and r["reward/outside_window"] == 0 for r in records)


def test_cli_reports_a_mask_without_a_window_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"]["mask_budget"] = True
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(path), f"--trainer.default_root_dir={tmp_path}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nasprune: error:")]
    assert lines == [f"nasprune: error: data.env_kwargs.mask_budget: needs a TargetWindowReward or HardBudgetReward (its budget is masked), got {'LinearReward'}"]
