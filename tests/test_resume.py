"""Resume after SIGKILL: the real command killed at a random moment, resumed with `--ckpt_path last`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nasprune.records import read_history
from nasprune.cli import main
from test_nasbench201 import write_table

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def tabular_args(repo: Path, table: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(repo / "configs" / "nasbench201.yaml"), f"--data.env_kwargs.table={table}", f"--trainer.default_root_dir={root}", *QUIET, *extra]


def run_dir(root: Path) -> Path:
    (found,) = (root / "lightning_logs").iterdir()
    return found


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds" and not k.startswith("seconds/")} for record in history]


def kill_at_random_moment(args: list[str], history: Path, checkpoint: Path, episodes: int, rng: random.Random) -> int:
    """Start `nasprune ARGS`, SIGKILL it once the history holds a random number of episodes past the
    first checkpoint; returns how many lines the history had just before the kill."""
    target = rng.randint(1, episodes - 2)
    process = subprocess.Popen([sys.executable, "-m", "nasprune", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            lines = history.read_bytes().count(b"\n") if history.exists() else 0
            if checkpoint.exists() and lines >= target:
                break
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.002)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return lines


def resume(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "nasprune", *args, "--ckpt_path", "last"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def scalar_steps(events_file: Path, tag: str) -> list[int]:
    events = EventAccumulator(str(events_file))
    events.Reload()
    return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


@pytest.mark.slow
def test_a_killed_tabular_search_resumes_to_the_same_history_as_an_uninterrupted_one(repo: Path, tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    table = write_table(tmp_path / "nb201.csv")
    budget = ["--trainer.max_steps=40", "--data.episodes_per_update=8", "--history.fsync_interval=0", "--trainer.log_every_n_steps=1",
              "--checkpoint.every_n_train_steps=1"]  # 320 episodes, a checkpoint after each update
    killed = tmp_path / "killed"
    args = tabular_args(repo, table, killed, *budget)
    directory = killed / "lightning_logs" / "version_0"
    lines_at_kill = kill_at_random_moment(args, directory / "history.jsonl", directory / "checkpoints" / "last.ckpt", 320, rng)
    first_events = sorted(directory.glob("events.out.tfevents.*"))
    resume(args)

    history = read_history(directory / "history.jsonl")
    assert [h["episode"] for h in history] == list(range(320)), f"kill seed {seed}"
    assert [h["update"] for h in history] == [i // 8 for i in range(320)]
    assert list((killed / "lightning_logs").iterdir()) == [directory]  # one run directory, continued
    main(tabular_args(repo, table, tmp_path / "whole", *budget))
    uninterrupted = read_history(run_dir(tmp_path / "whole") / "history.jsonl")
    assert without_timing(history) == without_timing(uninterrupted), f"kill seed {seed}"
    assert json.loads((directory / "best.json").read_text()) == max(history, key=lambda h: h["reward"])

    # the resumed process's curves start where the checkpoint left off and run to the end
    (resumed_events,) = sorted(set(directory.glob("events.out.tfevents.*")) - set(first_events))
    episode_steps = scalar_steps(resumed_events, "episode/reward")
    start = episode_steps[0]
    assert 0 < start <= lines_at_kill and start % 8 == 0
    assert episode_steps == list(range(start, 320))
    assert scalar_steps(resumed_events, "search/reward") == list(range(start // 8, 40))
    for old in first_events:  # whatever the killed process got to write lies before the resumed steps
        assert all(step < start + 8 for step in scalar_steps(old, "episode/reward"))


@pytest.mark.slow
def test_a_killed_digits_search_resumes_without_losing_or_retraining_an_episode(repo: Path, tmp_path: Path, tiny_env_kwargs: dict) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs)
    config["data"]["episodes_per_update"] = 2
    config["trainer"]["max_steps"] = 3  # 6 episodes
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    args = ["fit", "-c", str(config_path), f"--trainer.default_root_dir={tmp_path}", *QUIET]
    directory = tmp_path / "lightning_logs" / "version_0"
    kill_at_random_moment(args, directory / "history.jsonl", directory / "checkpoints" / "last.ckpt", 6, rng)
    before = {h["episode"]: h for h in read_history(directory / "history.jsonl")}
    resume(args)

    history = read_history(directory / "history.jsonl")
    assert [h["episode"] for h in history] == list(range(6)), f"kill seed {seed}"
    assert [h["update"] for h in history] == [i // 2 for i in range(6)]
    for record in history:
        if record["episode"] in before:  # the same episode, replayed from the same state and seed
            assert record["design"] == before[record["episode"]]["design"] and record["reward"] == before[record["episode"]]["reward"]
    trained = [h["design_str"] for h in history if not h.get("cached")]
    assert len(trained) == len(set(trained))  # no design trained twice in the run, across the restart
    assert {h["design_str"] for h in history} == set(trained)


def test_resuming_with_another_config_is_refused(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = write_table(tmp_path / "nb201.csv")
    main(tabular_args(repo, table, tmp_path, "--trainer.max_steps=2"))
    history = run_dir(tmp_path) / "history.jsonl"
    before = history.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(tabular_args(repo, table, tmp_path, "--trainer.max_steps=4", "--data.env_kwargs.reward_column=test_acc_12ep", "--ckpt_path=last"))
    assert exit_info.value.code == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nasprune: error:")]
    assert line.startswith("nasprune: error: data.env_kwargs.reward_column: the run being resumed")
    assert '"valid_acc_12ep"' in line and '"test_acc_12ep"' in line
    assert history.read_bytes() == before


def test_a_history_that_is_not_the_checkpoints_is_refused(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = write_table(tmp_path / "nb201.csv")
    main(tabular_args(repo, table, tmp_path / "a", "--trainer.max_steps=2"))
    main(tabular_args(repo, table, tmp_path / "b", "--trainer.max_steps=2", "--seed_everything=1"))
    other = (run_dir(tmp_path / "b") / "history.jsonl").read_bytes()
    (run_dir(tmp_path / "a") / "history.jsonl").write_bytes(other)
    with pytest.raises(SystemExit):
        main(tabular_args(repo, table, tmp_path / "a", "--trainer.max_steps=4", "--ckpt_path=last"))
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nasprune: error:")]
    assert line.startswith("nasprune: error: ckpt_path: ") and "are not the ones the checkpoint counted" in line


def test_a_new_run_never_appends_to_an_existing_history(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = write_table(tmp_path / "nb201.csv")
    pinned = ["--trainer.logger=TensorBoardLogger", f"--trainer.logger.save_dir={tmp_path}", "--trainer.logger.version=fixed"]
    main(tabular_args(repo, table, tmp_path, "--trainer.max_steps=1", *pinned))
    with pytest.raises(SystemExit):
        main(tabular_args(repo, table, tmp_path, "--trainer.max_steps=1", *pinned))
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nasprune: error:")]
    assert line.startswith("nasprune: error: ckpt_path: ") and "already holds 16 episodes of another run" in line
    assert len(read_history(tmp_path / "lightning_logs" / "fixed" / "history.jsonl")) == 16  # one update of the config's 16 episodes


def test_episodes_written_after_the_last_checkpoint_and_a_torn_line_are_replaced(repo: Path, tmp_path: Path) -> None:
    """What a kill between a history write and the next checkpoint leaves behind, made by hand."""
    table = write_table(tmp_path / "nb201.csv")
    main(tabular_args(repo, table, tmp_path / "whole", "--trainer.max_steps=3"))
    whole = read_history(run_dir(tmp_path / "whole") / "history.jsonl")
    main(tabular_args(repo, table, tmp_path / "cut", "--trainer.max_steps=2"))
    directory = run_dir(tmp_path / "cut")
    with (directory / "history.jsonl").open("a") as handle:  # two uncounted episodes and a torn line
        handle.write(json.dumps({**whole[16], "reward": -5.0}) + "\n" + json.dumps(whole[17]) + "\n" + '{"episode": 18, "rew')
    main(tabular_args(repo, table, tmp_path / "cut", "--trainer.max_steps=3", "--ckpt_path=last"))
    assert without_timing(read_history(directory / "history.jsonl")) == without_timing(whole)


@pytest.mark.parametrize("strategy", ["nasprune.controller.RegularizedEvolution", "nasprune.controller.RandomSearch"])
def test_gradient_free_strategies_resume_exactly(repo: Path, tmp_path: Path, strategy: str) -> None:
    """The evolution population and the strategies' generators are in the checkpoint."""
    table = write_table(tmp_path / "nb201.csv")
    extra = [f"--model={strategy}", *(["--model.population_size=12", "--model.sample_size=4"] if "Evolution" in strategy else [])]
    main(tabular_args(repo, table, tmp_path / "whole", "--trainer.max_steps=4", *extra))
    main(tabular_args(repo, table, tmp_path / "cut", "--trainer.max_steps=2", *extra))
    main(tabular_args(repo, table, tmp_path / "cut", "--trainer.max_steps=4", "--ckpt_path=last", *extra))
    resumed = read_history(run_dir(tmp_path / "cut") / "history.jsonl")
    assert without_timing(resumed) == without_timing(read_history(run_dir(tmp_path / "whole") / "history.jsonl"))
