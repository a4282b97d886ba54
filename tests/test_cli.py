"""Smoke runs of the real entry point with the real configs and tiny budgets, checked by what they wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nasprune.cli import main, run

SEARCH_TAGS = {
    "search/reward",
    "search/reward_max",
    "search/reward_best",
    "search/baseline",
    "search/entropy",
    "search/loss",
    "search/policy_loss",
    "search/episodes",
    "search/reward_recent",
}
EPISODE_TAGS = {"episode/reward", "episode/accuracy", "episode/flops", "episode/params"}


def digits_run(repo: Path, root: Path, *extra: str) -> Path:
    run(
        [
            "fit",
            "-c",
            str(repo / "configs" / "digits.yaml"),
            "--trainer.max_steps=2",
            "--data.episodes_per_update=2",
            f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false",
            "--export.enabled=false",
            *extra,
        ]
    )
    (run_dir,) = (root / "lightning_logs").iterdir()
    return run_dir


def read_history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Path(__file__).resolve().parents[1]
    return digits_run(repo, tmp_path_factory.mktemp("smoke"))


def test_tensorboard_scalars_have_the_exact_tags_and_steps(smoke_run: Path) -> None:
    events = EventAccumulator(str(smoke_run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert SEARCH_TAGS <= tags
    assert EPISODE_TAGS <= tags
    for tag in SEARCH_TAGS:
        assert [e.step for e in events.Scalars(tag)] == [0, 1], tag
    for tag in EPISODE_TAGS:
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2, 3], tag
    history = read_history(smoke_run)
    assert [e.value for e in events.Scalars("episode/reward")] == pytest.approx([h["reward"] for h in history])
    assert [e.value for e in events.Scalars("episode/flops")] == pytest.approx([h["flops"] for h in history])
    means = [sum(h["reward"] for h in history[i : i + 2]) / 2 for i in (0, 2)]
    assert [e.value for e in events.Scalars("search/reward")] == pytest.approx(means)
    best = [max(h["reward"] for h in history[:2]), max(h["reward"] for h in history)]
    assert [e.value for e in events.Scalars("search/reward_best")] == pytest.approx(best)
    assert [e.value for e in events.Scalars("search/episodes")] == [2.0, 4.0]
    recent = [sum(h["reward"] for h in history[:2]) / 2, sum(h["reward"] for h in history) / 4]
    assert [e.value for e in events.Scalars("search/reward_recent")] == pytest.approx(recent)


def test_history_and_best_files(smoke_run: Path) -> None:
    history = read_history(smoke_run)
    assert [h["episode"] for h in history] == [0, 1, 2, 3]
    assert [h["update"] for h in history] == [0, 0, 1, 1]
    for record in history:
        assert len(record["actions"]) == 9 and record["length"] == 9
        assert {"design", "accuracy", "flops", "params", "seconds", "reward/cost_term"} <= set(record)
        assert record["seconds"] > 0
    best = json.loads((smoke_run / "best.json").read_text())
    assert best == max(history, key=lambda h: h["reward"])


def test_same_seed_same_designs_and_rewards(repo: Path, tmp_path: Path, smoke_run: Path) -> None:
    again = read_history(digits_run(repo, tmp_path))
    first = read_history(smoke_run)
    assert [h["design"] for h in again] == [h["design"] for h in first]
    assert [h["reward"] for h in again] == [h["reward"] for h in first]
    other = read_history(digits_run(repo, tmp_path / "seed1", "--seed_everything=1"))
    assert [h["actions"] for h in other] != [h["actions"] for h in first]


def test_print_config(repo: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(repo / "configs" / "digits.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["env_id"] == "nasprune/NasPrune-v0"
    assert printed["trainer"]["max_steps"] == 60
    assert printed["model"]["init_args"]["hidden_size"] == 64


def test_packaged_config_is_found_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "-c", "configs/cartpole.yaml", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["env_id"] == "CartPole-v1"


def _with(config: dict, path: list[str], value: object) -> dict:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        (["data", "env_kwargs", "search_space", "ops"], ["conv3x3", "conv10x10"], "data.env_kwargs.search_space.ops", "conv10x10"),
        (["data", "env_kwargs", "search_space", "widths"], [], "data.env_kwargs.search_space.widths", "empty"),
        (["data", "env_kwargs", "search_space", "prune_ratios"], [0.0, 1.2], "data.env_kwargs.search_space.prune_ratios", "1.2"),
        (["data", "env_kwargs", "search_space", "widths"], [16, 0], "data.env_kwargs.search_space.widths", "PositiveInt"),
        (["data", "env_id"], "nasprune/NoSuchEnv-v0", "data.env_id", "NoSuchEnv"),
        (["data", "env_id"], "no_such_module:Env-v0", "data.env_id", "no_such_module"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, path: list[str], value: object, key: str, fragment: str
) -> None:
    config = _with(yaml.safe_load((repo / "configs" / "digits.yaml").read_text()), path, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad), f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nasprune: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"nasprune: error: {key}:") and fragment in lines[0]
    assert not (tmp_path / "lightning_logs").exists()  # nothing was trained


def test_an_env_from_the_users_own_module(tmp_path: Path) -> None:
    """Swapping envs: `module:Name-v0` imports the user's module, which registers its env."""
    cli = run(
        [
            "fit",
            "--data.env_id=toy_envs:TargetSequence-v0",
            "--data.env_kwargs={target: [1, 1], n_actions: 2}",
            "--data.episodes_per_update=4",
            "--trainer.max_steps=3",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--seed_everything=0",
        ]
    )
    assert cli.datamodule.env.unwrapped.target == (1, 1)
    history = read_history(next(tmp_path.glob("lightning_logs/version_*")))
    assert len(history) == 12 and all(len(h["actions"]) == 2 for h in history)
    assert {h["matches"] for h in history} <= {0, 1, 2}
