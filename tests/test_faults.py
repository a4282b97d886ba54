"""Faults injected as a hostile user would: kills mid-write on a second filesystem, corrupt data,
settings that fail every child, dying workers, bad tables. Each test asserts the outcome: nothing
lost, one line naming the key or the file, the documented exit code."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids)
from nasprune.records import read_history
from nasprune.config import ConfigError
from nasprune.controller import EpisodeDataModule, episode_seed
from nasprune.controller.vector import WorkerDiedError
from test_nasbench201 import COLUMNS, synthetic_row, write_table

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def nasprune(args: list[str], *, prelude: str = "", cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`nasprune ARGS` in a fresh process, after `prelude` (Python that injects a fault) has run."""
    script = f"import sys\n{textwrap.dedent(prelude)}\nfrom nasprune.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nasprune: error:")]


def tabular(repo: Path, table: Path, root: Path, *extra: str) -> list[str]:
    return ["fit", "-c", str(repo / "configs" / "nasbench201.yaml"), f"--data.env_kwargs.table={table}", f"--trainer.default_root_dir={root}", *QUIET, *extra]


@contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `mount_point` for the test (skipped with the reason where it cannot mount)."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def second_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A run directory on another filesystem than the temp directory."""
    with tmpfs(tmp_path / "volume", "64m") as mount_point:
        assert os.stat(mount_point).st_dev != os.stat(tmp_path).st_dev
        yield mount_point


# ---- 1. atomic checkpoints --------------------------------------------------------------------

# A SIGKILL in the middle of putting a checkpoint's bytes in place, however they get there: halfway
# through a cross-filesystem copy (`shutil.move`'s fallback), or just before the rename of a fully
# written temporary file (on the second checkpoint, so that there is an earlier one to keep).
KILL_DURING_CHECKPOINT_WRITE = """
import os, signal
real_sendfile, real_replace = os.sendfile, os.replace
saves = []
def sendfile(out_fd, in_fd, offset, count):
    real_sendfile(out_fd, in_fd, offset, max(1, os.fstat(in_fd).st_size // 2))
    os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst, *args, **kwargs):
    if str(dst).endswith("last.ckpt"):
        saves.append(dst)
        if len(saves) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *args, **kwargs)
os.sendfile, os.replace = sendfile, replace
"""


@pytest.mark.slow
def test_a_kill_while_last_ckpt_is_written_on_another_filesystem_keeps_the_previous_one(repo: Path, tmp_path: Path, second_filesystem: Path) -> None:
    table = write_table(tmp_path / "nb201.csv")
    args = tabular(repo, table, second_filesystem, "--trainer.max_steps=4", "--data.episodes_per_update=4", "--data.num_envs=1", "--checkpoint.every_n_train_steps=1")
    killed = nasprune(args, prelude=KILL_DURING_CHECKPOINT_WRITE)
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoint = second_filesystem / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 1  # the previous checkpoint, whole
    resumed = nasprune([*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    history = read_history(checkpoint.parent.parent / "history.jsonl")
    assert [h["episode"] for h in history] == list(range(16))
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 4


# ---- 5. data that cannot be read ---------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape) + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, test_images: int = 12, test_labels: int = 12) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(40) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (test_images, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(test_labels) % 10)
    return raw


def mnist_env(root: Path) -> gym.Env:
    return gym.make("nasprune/NasPrune-v0", datamodule={"class_path": "nasprune.child.MNISTDataModule", "init_args": {"root": str(root)}})


def test_a_truncated_mnist_test_split_stops_the_run_before_any_search(tmp_path: Path) -> None:
    raw = fake_mnist(tmp_path)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[: 16 + 5 * 28 * 28])  # the header says 12 images, 5 are there
    with pytest.raises(ConfigError) as err:
        mnist_env(tmp_path)
    assert err.value.key == "datamodule.init_args.root"
    assert "MNIST test split" in err.value.detail and str(raw) in err.value.detail and "\n" not in str(err.value)


def test_mnist_images_and_labels_of_different_lengths_are_refused(tmp_path: Path) -> None:
    fake_mnist(tmp_path, test_images=12, test_labels=10)
    with pytest.raises(ConfigError) as err:
        mnist_env(tmp_path)
    assert err.value.key == "datamodule.init_args.root"
    assert "test split" in err.value.detail and "12 images but 10 labels" in err.value.detail


# ---- 6. settings that fail every child ---------------------------------------------------------


@pytest.mark.parametrize(
    ("training", "key", "text"),
    [
        ({"precision": "bogus"}, "training.precision", "'bogus' is refused by Lightning: Precision 'bogus' is invalid"),
        ({"devices": 0}, "training.devices", "0 is refused by Lightning"),
        pytest.param(
            {"accelerator": "gpu"}, "training.accelerator", "'gpu' is refused by Lightning: No supported gpu backend found",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_child_settings_lightning_refuses_fail_before_the_search(training: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        gym.make("nasprune/NasPrune-v0", training=training)
    assert err.value.key == key and text in err.value.detail and "\n" not in str(err.value)


@pytest.mark.slow
def test_a_search_whose_first_children_all_fail_the_same_way_stops_with_one_line(repo: Path, tmp_path: Path, tiny_env_kwargs: dict) -> None:
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs)
    config["data"]["env_kwargs"]["training"]["lr"] = 1e30  # every child's loss diverges
    config["data"]["episodes_per_update"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = nasprune(["fit", "-c", str(tmp_path / "c.yaml"), f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=50", "--data.fail_fast_after=3", *QUIET])
    assert done.returncode == 1, done.stderr[-2000:]
    (line,) = error_lines(done.stderr)
    assert line.startswith("nasprune: error: the first 3 children all failed with non_finite_loss (latest: NonFiniteLossError: training loss became")
    assert "data.fail_fast_after" in line
    history = read_history(tmp_path / "lightning_logs" / "version_0" / "history.jsonl")
    assert [(h["episode"], h["error_kind"]) for h in history] == [(i, "non_finite_loss") for i in range(3)]  # recorded, then stopped


def test_first_failures_of_different_kinds_or_after_a_success_do_not_stop_a_search() -> None:
    from nasprune.controller.datamodule import FirstFailures
    from nasprune.controller.episode import Episode

    def episode(index: int, error: str | None) -> Episode:
        info = {} if error is None else {"error_kind": "exception", "error": f"{error}: boom"}
        return Episode(index, [], [], [], info)

    mixed = FirstFailures(2)
    for index, error in enumerate(["ValueError", "TypeError", "TypeError", "TypeError"]):
        mixed.check(episode(index, error))
    late = FirstFailures(2)
    for index, error in enumerate([None, "ValueError", "ValueError", "ValueError"]):
        late.check(episode(index, error))
    stops = FirstFailures(2)
    stops.check(episode(0, "ValueError"))
    with pytest.raises(Exception, match="the first 2 children all failed with exception"):
        stops.check(episode(1, "ValueError"))


# ---- 8. a dying async worker -------------------------------------------------------------------


class SeededAgent:
    """A batch agent whose actions come from its own generator: replaying a round must not draw more."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.calls = 0

    def initial_states(self, n: int) -> None:
        return None

    def act_batch(self, observations: list, states: None) -> tuple[list[int], None]:
        self.calls += 1
        return [int(a) for a in self.rng.integers(4, size=len(observations))], None


def play_bandit(backend: str, env_kwargs: dict, episodes: int = 8) -> tuple[list, SeededAgent]:
    data = EpisodeDataModule("fault_envs:DyingBandit-v0", env_kwargs, episodes_per_update=episodes, seed=7, num_workers=2, backend=backend)
    agent = SeededAgent()
    try:
        return data.play_batch(agent, episodes), agent
    finally:
        data.teardown("fit")


@pytest.mark.slow
def test_a_dying_async_worker_is_replaced_and_its_round_replayed(tmp_path: Path) -> None:
    dying = {"die_on_seed": episode_seed(7, 5), "marker": str(tmp_path / "died")}
    reference, reference_agent = play_bandit("sync", {})
    played, agent = play_bandit("async", dying)
    assert (tmp_path / "died").exists()  # worker 1 was killed at the last step of episode 5
    assert [(e.index, e.actions, e.rewards, e.info) for e in played] == [(e.index, e.actions, e.rewards, e.info) for e in reference]
    assert agent.calls == reference_agent.calls  # the replay reused the round's actions
    assert [e.worker for e in played] == [0, 1, 0, 1, 0, 2, 0, 2]  # the dead slot's replacement has a new id


@pytest.mark.slow
def test_a_worker_that_dies_again_on_the_replay_stops_the_search_with_one_line() -> None:
    with pytest.raises(WorkerDiedError) as err:
        play_bandit("async", {"die_on_seed": episode_seed(7, 2)})
    message = str(err.value)
    assert message == "worker 2 (killed by SIGKILL (the out-of-memory killer sends it)) died again while its round was replayed; the search stopped (resume it with --ckpt_path last)"


# ---- 12. NAS-Bench-201 tables ------------------------------------------------------------------


def test_a_nasbench201_table_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    plain = write_table(tmp_path / "plain.csv")
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())  # what a spreadsheet's "CSV UTF-8" writes
    env = gym.make("nasprune/NasBench201-v0", table=str(marked))
    assert env.unwrapped.table.columns == tuple(COLUMNS) and len(env.unwrapped.table.rows) == 729


def test_a_nasbench201_table_with_a_repeated_index_is_refused(tmp_path: Path) -> None:
    rows = [synthetic_row(0, (1,) * 6), synthetic_row(1, (2,) * 6), synthetic_row(0, (3,) * 6)]
    table = write_table(tmp_path / "nb201.csv", rows=rows)
    with pytest.raises(ConfigError) as err:
        gym.make("nasprune/NasBench201-v0", table=str(table))
    assert err.value.key == "table" and "row 3 (line 4), column 'index': '0' repeats row 1" in err.value.detail


# ---- 2, 3, 13. resuming what is there, and only that ---------------------------------------------


def refusal(capsys: pytest.CaptureFixture, args: list[str], code: int = 2) -> str:
    """Run `main(args)` in this process; it must exit with `code` and one `nasprune: error:` line."""
    from nasprune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert "Traceback" not in err
    return line


def test_resuming_a_run_that_has_no_checkpoint_yet_is_refused_not_restarted(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=2"))
    run_dir = tmp_path / "lightning_logs" / "version_0"
    (run_dir / "checkpoints" / "last.ckpt").unlink()  # as a run killed before its first checkpoint leaves it
    line = refusal(capsys, tabular(repo, table, tmp_path, "--trainer.max_steps=4", "--ckpt_path=last"))
    assert line.startswith("nasprune: error: ckpt_path: ") and f"{run_dir} holds 32 episodes but no checkpoint" in line
    assert "without --ckpt_path" in line
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]  # no new run started
    line = refusal(capsys, tabular(repo, table, tmp_path / "empty", "--ckpt_path=last"))
    assert line.startswith("nasprune: error: ckpt_path: nothing to resume under ")


@pytest.mark.parametrize(
    ("damage", "what"),
    [("empty", "is empty"), ("truncate", "cannot be read"), ("directory", "is not a file"), ("missing", "does not exist")],
)
def test_an_unreadable_checkpoint_is_one_line_naming_the_file(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str, what: str) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=1"))
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    data = checkpoint.read_bytes()
    if damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "truncate":
        checkpoint.write_bytes(data[: len(data) // 2])
    elif damage == "directory":
        checkpoint.unlink()
        checkpoint.mkdir()
    else:
        checkpoint.unlink()
    given = str(checkpoint) if damage != "missing" else str(checkpoint.with_name("nowhere.ckpt"))
    line = refusal(capsys, tabular(repo, table, tmp_path, "--trainer.max_steps=2", f"--ckpt_path={given}"))
    assert line.startswith(f"nasprune: error: ckpt_path: {given} {what}")


def test_a_resume_whose_budget_is_spent_says_so(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    args = tabular(repo, table, tmp_path, "--trainer.max_steps=2")
    main(args)
    capsys.readouterr()
    main([*args, "--ckpt_path=last"])
    out = capsys.readouterr().out
    assert f"nothing to resume: the run's budget (trainer.max_steps 2) is spent: {tmp_path / 'lightning_logs' / 'version_0'}" in out
    commands = (tmp_path / "lightning_logs" / "version_0" / "command.txt").read_text().splitlines()
    assert len(commands) == 2 and "--ckpt_path=last" not in commands[0] and commands[1].endswith("--ckpt_path=last")


def test_no_episode_no_best_file_is_printed(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main

    main(tabular(repo, write_table(tmp_path / "nb201.csv"), tmp_path, "--trainer.max_steps=0"))
    out = capsys.readouterr().out
    assert "best.json" not in out and not (tmp_path / "lightning_logs" / "version_0" / "best.json").exists()


KILL_DURING_EXPORT = """
import os, signal
import nasprune.export
def save_torchscript(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
nasprune.export.save_torchscript = save_torchscript
"""


@pytest.mark.slow
def test_a_search_killed_during_its_final_export_is_exported_by_the_resume(repo: Path, tmp_path: Path, tiny_env_kwargs: dict) -> None:
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs)
    config["data"]["episodes_per_update"] = 2
    config["trainer"]["max_steps"] = 2
    config["export"]["final_training"] = {"epochs": 1, "finetune_epochs": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    args = ["fit", "-c", str(tmp_path / "c.yaml"), f"--trainer.default_root_dir={tmp_path}", *QUIET]
    killed = nasprune(args, prelude=KILL_DURING_EXPORT)
    assert killed.returncode == -9
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert not (run_dir / "export").exists()  # an export is whole or absent
    resumed = nasprune([*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finishing the export the stopped run had begun" in resumed.stdout
    metrics = json_file(run_dir / "export" / "metrics.json")
    best = max((h for h in read_history(run_dir / "history.jsonl") if "error" not in h), key=lambda h: h["reward"])
    assert metrics["episode"] == best["episode"] and {"design.json", "model.ckpt", "model.ts"} <= set(metrics["files"])


def json_file(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


# ---- 4. one search per run directory -----------------------------------------------------------

# Both searches pick the same version_N, as on a slow shared filesystem: the choice waits a while.
SLOW_VERSION_CHOICE = """
import time
from pytorch_lightning.loggers import TensorBoardLogger
real = TensorBoardLogger._get_next_version
def slow(self):
    version = real(self)
    time.sleep(4)
    return version
TensorBoardLogger._get_next_version = slow
# The search holds its directory a while longer, so that the other has met the lock by then however
# late it started (on a loaded machine one interpreter can start seconds after the other).
from nasprune.lock import RunLock
real_release = RunLock.release
def slow_release(self):
    time.sleep(12)
    real_release(self)
RunLock.release = slow_release
"""


@pytest.mark.slow
def test_two_searches_started_at_once_in_one_directory_one_is_refused(repo: Path, tmp_path: Path) -> None:
    table = write_table(tmp_path / "nb201.csv")
    script = f"import sys\n{SLOW_VERSION_CHOICE}\nfrom nasprune.cli import main\nmain(sys.argv[1:])\n"
    runs = [
        subprocess.Popen([sys.executable, "-c", script, *tabular(repo, table, tmp_path, "--trainer.max_steps=30", f"--seed_everything={seed}")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for seed in (1, 2)
    ]
    outcomes = [(process.wait(timeout=300), process.stderr.read()) for process in runs]
    assert sorted(code for code, _ in outcomes) == [0, 2], outcomes
    winner = [code for code, _ in outcomes].index(0)
    (line,) = error_lines(outcomes[1 - winner][1])
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert line.startswith(f"nasprune: error: trainer.default_root_dir: {run_dir} is in use by another search (pid {runs[winner].pid} on ")
    assert f"--seed_everything={winner + 1}" in (run_dir / "command.txt").read_text()  # the winner's files are the winner's
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed_everything"] == winner + 1
    assert len(read_history(run_dir / "history.jsonl")) == 30 * 16


def test_a_resume_of_a_run_in_progress_is_refused(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main
    from nasprune.lock import RunLock

    table = write_table(tmp_path / "nb201.csv")
    args = tabular(repo, table, tmp_path, "--trainer.max_steps=1")
    main(args)
    run_dir = tmp_path / "lightning_logs" / "version_0"
    history = (run_dir / "history.jsonl").read_bytes()
    held = RunLock.acquire(run_dir)  # as the search still running there would
    try:
        line = refusal(capsys, [*args[:-1], "--trainer.max_steps=3", "--ckpt_path=last"])
    finally:
        held.release()
    assert line.startswith(f"nasprune: error: trainer.default_root_dir: {run_dir} is in use by another search (pid {os.getpid()} on ")
    assert (run_dir / "history.jsonl").read_bytes() == history


# ---- 7. stopped by a signal ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_search_stopped_by_a_signal_says_so_and_exits_as_shells_do(repo: Path, tmp_path: Path, signum: int, code: int) -> None:
    table = write_table(tmp_path / "nb201.csv")
    args = tabular(repo, table, tmp_path, "--trainer.max_steps=400", "--data.episodes_per_update=4", "--data.num_envs=1", "--checkpoint.every_n_train_steps=1")
    run_dir = tmp_path / "lightning_logs" / "version_0"
    process = subprocess.Popen([sys.executable, "-m", "nasprune", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read() if process.poll() is not None else "no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signum)
    assert process.wait(timeout=120) == code
    err = process.stderr.read()
    (line,) = [line for line in err.splitlines() if line.startswith("nasprune: stopped")]
    found = re.fullmatch(rf"nasprune: stopped by {signal.Signals(signum).name} at episode (\d+) of 1600; resume with --ckpt_path last", line)
    assert found is not None, line
    assert "Traceback" not in err
    resumed = nasprune([*args, "--ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [h["episode"] for h in read_history(run_dir / "history.jsonl")] == list(range(1600))


# ---- 9, 10, 11. one line, not a traceback --------------------------------------------------------


def yaml_config(tmp_path: Path, repo: Path, name: str, edit: dict) -> Path:
    """configs/NAME.yaml with `edit` ({"dotted.key": value}) applied, written to tmp_path."""
    config = yaml.safe_load((repo / "configs" / name).read_text())
    for dotted, value in edit.items():
        *parents, last = dotted.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / f"edited-{len(list(tmp_path.glob('edited-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("config", "edit", "key"),
    [
        ("digits.yaml", {"data.env_kwargs.failure_reward": "bad"}, "data.env_kwargs.failure_reward"),
        ("digits.yaml", {"data.env_kwargs.search_space.prune_ratios": [0.0, "half"]}, "data.env_kwargs.search_space.prune_ratios"),
        ("digits.yaml", {"data.max_episode_steps": 0}, "data.max_episode_steps"),
        ("digits.yaml", {"trainer.max_steps": -5}, "trainer.max_steps"),
        ("digits.yaml", {"model.init_args.hidden_size": 0}, "model.init_args.hidden_size"),
        ("digits.yaml", {"model.init_args.lr": -1}, "model.init_args.lr"),
        ("digits.yaml", {"model.init_args.temperature": 0}, "model.init_args.temperature"),
        ("digits.yaml", {"model.init_args.baseline_decay": 1.0}, "model.init_args.baseline_decay"),
        ("digits.yaml", {"model.init_args.recent_window": 0}, "model.init_args.recent_window"),
        ("digits.yaml", {"model.init_args.update_epochs": 0}, "model.init_args.update_epochs"),
        ("digits.yaml", {"model.init_args.clip_ratio": 0.0}, "model.init_args.clip_ratio"),
        ("digits.yaml", {"model": {"class_path": "nasprune.controller.RegularizedEvolution", "init_args": {"population_size": 0}}}, "model.init_args.population_size"),
        ("digits.yaml", {"model": {"class_path": "nasprune.controller.LocalSearch", "init_args": {"initial_designs": 0}}}, "model.init_args.initial_designs"),
        ("digits.yaml", {"model": {"class_path": "nasprune.controller.OptunaSearch", "init_args": {"storage": "postgres"}}}, "model.init_args.storage"),
        ("nasbench201.yaml", {"data.env_kwargs.latency_constraint": "mild"}, "data.env_kwargs.latency_constraint"),
        ("nasbench201.yaml", {"data.env_kwargs.latency_target": -1.0}, "data.env_kwargs.latency_target"),
        ("digits.yaml", {"data.env_kwargs.datamodule": {"class_path": "nasprune.child.DigitsDataModule", "init_args": {"batch_size": 0}}}, "data.env_kwargs.datamodule.init_args.batch_size"),
        ("digits.yaml", {"data.env_kwargs.reward": {"class_path": "nasprune.child.LinearReward", "init_args": {"cost": "watts"}}}, "data.env_kwargs.reward.init_args.cost"),
        ("digits.yaml", {"data.env_kwargs.training.lr": "fast"}, "data.env_kwargs.training.lr"),
        ("digits.yaml", {"data.env_kwargs.training.limit_train_batches": 0}, "data.env_kwargs.training.limit_train_batches"),
        ("digits.yaml", {"data.env_kwargs.training.limit_train_batches": 1.5}, "data.env_kwargs.training.limit_train_batches"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_key(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, config: str, edit: dict, key: str) -> None:
    path = yaml_config(tmp_path, repo, config, edit)
    line = refusal(capsys, ["fit", "-c", str(path), f"--trainer.default_root_dir={tmp_path}", *QUIET])
    assert line.startswith(f"nasprune: error: {key}: "), line
    assert not (tmp_path / "lightning_logs").exists()  # refused before any search


def test_an_env_module_that_raises_is_one_line(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "broken_env_module.py").write_text("raise RuntimeError('the module is broken')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        line = refusal(capsys, ["fit", "-c", str(repo / "configs" / "cartpole.yaml"), "--data.env_id=broken_env_module:Broken-v0", f"--trainer.default_root_dir={tmp_path}", *QUIET])
    finally:
        sys.path.remove(str(tmp_path))
    assert line.startswith("nasprune: error: data.env_id: ") and "RuntimeError: the module is broken" in line


def test_a_binary_or_broken_config_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)))
    line = refusal(capsys, ["fit", "-c", str(binary)])
    assert str(binary) in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  max_steps: [1, 2\n")
    line = refusal(capsys, ["fit", "-c", str(broken)])
    assert str(broken) in line


def test_a_parser_error_is_one_line_without_the_usage(capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--no_such_option=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("nasprune: error: ") and "no_such_option" in err


def test_help_lists_the_commands_that_work(capsys: pytest.CaptureFixture) -> None:
    from nasprune.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "nasprune export RUN_DIR" in out and "nasprune report RUN_DIR" in out and re.search(r"^\s+fit\s", out, re.MULTILINE)
    for command in ("validate", "test", "predict"):
        assert not re.search(rf"^\s+{command}\s", out, re.MULTILINE), out




@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_history_survives(repo: Path, tmp_path: Path) -> None:
    table = write_table(tmp_path / "nb201.csv")
    with tmpfs(tmp_path / "small", "600k") as small:
        full = nasprune(tabular(repo, table, small, "--trainer.max_steps=300", "--checkpoint.every_n_train_steps=1"))
        assert full.returncode == 1, full.stderr[-2000:]
        (line,) = error_lines(full.stderr)
        assert "Traceback" not in full.stderr
        assert "no space left on device" in line and "resume with --ckpt_path last" in line
        history = read_history(small / "lightning_logs" / "version_0" / "history.jsonl")  # readable: at most a torn last line
        assert [h["episode"] for h in history] == list(range(len(history))) and history


# ---- 12. resume checks that say what they found --------------------------------------------------


def test_a_resume_with_a_relative_path_to_the_same_table_is_accepted(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=1"))
    monkeypatch.chdir(tmp_path)
    main(tabular(repo, Path("nb201.csv"), tmp_path, "--trainer.max_steps=2", "--ckpt_path=last"))
    assert len(read_history(tmp_path / "lightning_logs" / "version_0" / "history.jsonl")) == 32


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_truncated_or_deleted_history_is_called_so(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, damage: str) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=2"))
    history = tmp_path / "lightning_logs" / "version_0" / "history.jsonl"
    if damage == "truncated":
        history.write_text("".join(history.read_text().splitlines(keepends=True)[:5]))
    else:
        history.unlink()
    line = refusal(capsys, tabular(repo, table, tmp_path, "--trainer.max_steps=3", "--ckpt_path=last"))
    expected = "holds 5 episodes, but the checkpoint counts 32: it was truncated" if damage == "truncated" else "is missing, but the checkpoint counts 32 episodes"
    assert line.startswith(f"nasprune: error: ckpt_path: {history} {expected}"), line


def test_a_corrupt_line_in_the_part_a_resume_replays_does_not_block_it(repo: Path, tmp_path: Path) -> None:
    from nasprune.cli import main

    table = write_table(tmp_path / "nb201.csv")
    main(tabular(repo, table, tmp_path / "whole", "--trainer.max_steps=3"))
    whole = read_history(tmp_path / "whole" / "lightning_logs" / "version_0" / "history.jsonl")
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=2"))
    history = tmp_path / "lightning_logs" / "version_0" / "history.jsonl"
    with history.open("a") as handle:  # episodes after the checkpoint, one of them garbled (a disk error, an editor)
        handle.write('{"episode": 32, "rew\x00\x00\n' + '{"episode": 33}\n')
    main(tabular(repo, table, tmp_path, "--trainer.max_steps=3", "--ckpt_path=last"))
    strip = lambda records: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in records]  # noqa: E731
    assert strip(read_history(history)) == strip(whole)


# ---- 13. the report of a run that was stopped and resumed --------------------------------------


def test_the_reports_wall_time_sums_the_running_processes_and_it_quotes_the_first_command(tmp_path: Path) -> None:
    from nasprune.report import report_markdown

    for created, ran in ((1_700_000_000, 20.0), (1_700_050_000, 15.0)):  # a first run and its resume, 50,000 s apart
        events = tmp_path / f"events.out.tfevents.{created}.host.123.0"
        events.write_bytes(b"")
        os.utime(events, (created + ran, created + ran))
    (tmp_path / "command.txt").write_text("nasprune fit -c a.yaml\nnasprune fit -c a.yaml --ckpt_path last\n")
    records = [{"episode": 0, "update": 0, "reward": 1.0, "seconds": 1.0, "arch": "x"}]
    text = report_markdown(tmp_path, records, {}, "report.png", 1)
    assert "- **Wall time:** 0m 35s of running processes (sum of episode times 0m 01s)" in text
    assert "- **Command:** `nasprune fit -c a.yaml`" in text
    assert "- **Resumed** 1 times, last with: `nasprune fit -c a.yaml --ckpt_path last`" in text
