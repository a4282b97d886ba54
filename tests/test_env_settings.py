"""`data.env_kwargs` is typed by the env class's signature: nested overrides merge, bad values fail in one line."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from nasprune.cli import main, run
from nasprune.config import ConfigError
from nasprune.env_settings import env_class, env_id_in
from nasprune.envs import NasBench201Env, NasPruneEnv
from toy_envs import TargetSequenceEnv

REPO = Path(__file__).resolve().parents[1]


def printed_config(capsys: pytest.CaptureFixture[str], config: str, *overrides: str) -> list[str]:
    with pytest.raises(SystemExit) as done:
        run(["fit", "-c", str(REPO / config), *overrides, "--print_config"])
    assert done.value.code in (0, None)
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("config", "override", "before", "after"),
    [
        ("configs/mnist.yaml", "--data.env_kwargs.training.epochs=5", "      epochs: 1", "      epochs: 5"),
        ("configs/mnist.yaml", "--data.env_kwargs.datamodule.init_args.root=/elsewhere", "        root: ../shared/data", "        root: /elsewhere"),
        ("configs/mnist.yaml", "--data.env_kwargs.reward.init_args.beta=0.25", "        beta: 0.5", "        beta: 0.25"),
        ("configs/digits.yaml", "--data.env_kwargs.search_space.num_layers=2", "      num_layers: 3", "      num_layers: 2"),
        ("configs/nasbench201.yaml", "--data.env_kwargs.latency_target=20", "    latency_target: null", "    latency_target: 20.0"),
    ],
)
def test_a_nested_override_changes_exactly_one_value(
    capsys: pytest.CaptureFixture[str], config: str, override: str, before: str, after: str
) -> None:
    plain = printed_config(capsys, config)
    changed = printed_config(capsys, config, override)
    diff = [line for line in difflib.ndiff(plain, changed) if line[:1] in "+-"]
    assert diff == [f"- {before}", f"+ {after}"]


@pytest.mark.parametrize(
    ("override", "key", "fragment"),
    [
        ("--data.env_kwargs.training.lr=fast", "data.env_kwargs.training.lr", "could not convert string to float: 'fast'"),
        ("--data.env_kwargs.training.epochs=-1", "data.env_kwargs.training.epochs", "NonNegativeInt"),
        ("--data.env_kwargs.training.sparsity=1.0", "data.env_kwargs.training.sparsity", "UnitRatio"),
        ("--data.env_kwargs.training.batch=3", "data.env_kwargs.training", "Option 'batch' is not accepted"),
        ("--data.env_kwargs.datamodule.init_args.batch_size=0", "data.env_kwargs.datamodule.init_args.batch_size", "PositiveInt"),
        ("--data.env_kwargs.datamodule.init_args.val_fraction=1.5", "data.env_kwargs.datamodule.init_args.val_fraction", "OpenUnitInterval"),
        ("--data.env_kwargs.reward.init_args.cost=watts", "data.env_kwargs.reward.init_args.cost", "Got value: watts"),
        ("--data.env_kwargs.reward.init_args.cost_ref=0", "data.env_kwargs.reward.init_args.cost_ref", "PositiveFloat"),
        ("--data.env_kwargs.search_space.num_layers=0", "data.env_kwargs.search_space.num_layers", "PositiveInt"),
        ("--data.env_kwargs.search_space.widths=[8,0]", "data.env_kwargs.search_space.widths", "PositiveInt"),
        ("--data.env_kwargs.search_space.widths=[8,-4]", "data.env_kwargs.search_space.widths", "PositiveInt"),
        ("--data.env_kwargs.search_space.prune_ratios=[0.0,1.0]", "data.env_kwargs.search_space.prune_ratios", "UnitRatio"),
        ("--data.env_kwargs.search_space.prune_ratios=[-0.1]", "data.env_kwargs.search_space.prune_ratios", "UnitRatio"),
        ("--data.env_kwargs.search_space.downsample=[none,dilate]", "data.env_kwargs.search_space.downsample", "Got value: dilate"),
        ("--data.env_kwargs.search_space.skip_modes=[add,multiply]", "data.env_kwargs.search_space.skip_modes", "Got value: multiply"),
        ("--data.env_kwargs.search_space.skips=maybe", "data.env_kwargs.search_space.skips", "must be true or false, got 'maybe'"),
        ("--data.env_kwargs.search_space.ops=conv3x3", "data.env_kwargs.search_space.ops", "must be a list, got 'conv3x3'"),
        ("--data.env_kwargs.search_space.kernel=3", "data.env_kwargs.search_space", "Option 'kernel' is not accepted"),
        ("--data.env_kwargs.search_space.architecture=[{op: conv3x3, width: 8, kernel: 3}]", "data.env_kwargs.search_space.architecture", "kernel"),
        ("--data.env_kwargs.failure_reward=low", "data.env_kwargs.failure_reward", "must be a number, got 'low'"),
        ("--data.env_kwargs.mask_budget=maybe", "data.env_kwargs.mask_budget", "must be true or false, got 'maybe'"),
        ("--data.env_kwargs.search_space.head_grid=0", "data.env_kwargs.search_space.head_grid", "PositiveInt"),
    ],
)
def test_a_bad_env_setting_is_one_line_naming_the_key(override: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        run(["fit", "-c", str(REPO / "configs/digits.yaml"), override, "--print_config"])
    assert err.value.key == key
    assert fragment in err.value.detail
    assert "\n" not in str(err.value)


def test_the_terminal_shows_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["fit", "-c", str(REPO / "configs/mnist.yaml"), "--data.env_kwargs.training.lr=fast"])
    assert done.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "nasprune: error: data.env_kwargs.training.lr: Not of type PositiveFloat: could not convert string to float: 'fast'\n"
    )


def test_the_env_class_comes_from_the_registry_entry_point() -> None:
    assert env_class("nasprune/NasPrune-v0") is NasPruneEnv
    assert env_class("nasprune/NasBench201-v0") is NasBench201Env
    assert env_class("CartPole-v1") is CartPoleEnv
    assert env_class("toy_envs:TargetSequence-v0") is TargetSequenceEnv
    assert env_class("NoSuchEnv-v0") is None
    assert env_class("no_such_module:Env-v0") is None


def test_the_env_id_is_the_last_one_the_command_line_sets(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  env_id: CartPole-v1\n")
    assert env_id_in(["fit"]) == "nasprune/NasPrune-v0"
    assert env_id_in(["fit", "-c", str(config)]) == "CartPole-v1"
    assert env_id_in(["fit", f"--config={config}", "--data.env_id", "nasprune/NasBench201-v0"]) == "nasprune/NasBench201-v0"
    assert env_id_in(["fit", "--data.env_id=nasprune/NasBench201-v0", "-c", str(config)]) == "CartPole-v1"
    assert env_id_in(["fit", "--data", "{env_id: Acrobot-v1}"]) == "Acrobot-v1"


def test_an_untyped_env_takes_any_mapping(capsys: pytest.CaptureFixture[str]) -> None:
    lines = printed_config(capsys, "configs/cartpole.yaml", "--data.env_kwargs.render_mode=rgb_array")
    assert "    render_mode: rgb_array" in lines and "    sutton_barto_reward: false" in lines


def test_a_child_trains_on_every_batch_unless_told_otherwise(capsys: pytest.CaptureFixture[str]) -> None:
    """A fraction default of 1.0 would parse as the int 1 (one batch per epoch); the default is unset."""
    assert "      limit_train_batches: null" in printed_config(capsys, "configs/mnist.yaml")
    halved = printed_config(capsys, "configs/mnist.yaml", "--data.env_kwargs.training.limit_train_batches=0.5")
    assert "      limit_train_batches: 0.5" in halved
