"""TargetWindowReward: accuracy inside a cost window, a linear penalty by distance outside it."""

from pathlib import Path

import pytest

from nasprune.child import TargetWindowReward
from nasprune.cli import main
from nasprune.config import ConfigError


def test_inside_the_window_only_accuracy_counts() -> None:
    reward = TargetWindowReward(target=1000.0, tolerance=0.05, slope=2.0, alpha=1.0)
    for flops in (950, 1000, 1040, 1050):  # both edges included
        out = reward({"accuracy": 0.9, "flops": flops})
        assert out["reward"] == 0.9
        assert out["reward/outside_window"] == 0.0
    assert reward({"accuracy": 0.9, "flops": 1040})["reward/relative_cost"] == pytest.approx(0.04)


def test_outside_the_window_the_penalty_is_the_distance_to_the_nearer_edge() -> None:
    reward = TargetWindowReward(target=1000.0, tolerance=0.05, slope=2.0, alpha=1.0)
    over = reward({"accuracy": 0.9, "flops": 1200})  # (1200 − 1050) / 1000 = 0.15 → 0.9 − 2 · 0.15
    assert over["reward/outside_window"] == pytest.approx(0.15)
    assert over["reward"] == pytest.approx(0.6)
    under = reward({"accuracy": 0.9, "flops": 800})  # (950 − 800) / 1000 = 0.15, undershooting costs the same
    assert under["reward"] == pytest.approx(0.6)
    assert under["reward/relative_cost"] == pytest.approx(-0.2)
    assert under["reward/target"] == 1000.0


def test_alpha_and_cost_choice() -> None:
    reward = TargetWindowReward(target=200.0, tolerance=0.0, slope=1.0, cost="params", alpha=2.0)
    assert reward({"accuracy": 0.5, "flops": 10**9, "params": 200})["reward"] == 1.0
    assert reward({"accuracy": 0.5, "flops": 10**9, "params": 150})["reward"] == pytest.approx(0.75)  # 1.0 − 50/200
    assert reward.metrics_needed == ("accuracy", "params")


def test_a_target_is_required() -> None:
    with pytest.raises(ConfigError) as err:
        TargetWindowReward()
    assert err.value.key == "target"


@pytest.mark.parametrize(
    ("flag", "key"),
    [
        ("target=0.0", "target"),
        ("tolerance=1.0", "tolerance"),
        ("slope=-1.0", "slope"),
        ("cost=energy", "cost"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_key(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, key: str) -> None:
    """The CLI's typing of the reward's signature refuses them before any env is built."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(repo / "configs" / "mnist_ratios.yaml"), f"--data.env_kwargs.reward.init_args.{flag}", f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    (line,) = [entry for entry in capsys.readouterr().err.splitlines() if entry.startswith("nasprune: error:")]
    assert line.startswith(f"nasprune: error: data.env_kwargs.reward.init_args.{key}: ")
