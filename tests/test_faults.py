"""Faults injected as a hostile user would: kills mid-write on a second filesystem, corrupt data,
settings that fail every child, dying workers, bad tables. Each test asserts the outcome: nothing
lost, one line naming the key or the file, the documented exit code."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids)
from nasprune.callbacks import read_history
from nasprune.config import ConfigError
from nasprune.controller.episodes import EpisodeDataModule, episode_seed
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


@pytest.fixture
def second_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted for the test: a run directory on another filesystem than the temp directory."""
    mount_point = tmp_path / "volume"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        assert os.stat(mount_point).st_dev != os.stat(tmp_path).st_dev
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


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
        ({"limit_train_batches": 0}, "training.limit_train_batches", "got 0 (0 would train no child)"),
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
    from nasprune.controller.episodes import Episode, FirstFailures

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
    assert message == "worker 2 (killed by SIGKILL (the out-of-memory killer sends it)) died while replaying episodes 2-3; the search stopped (resume it with --ckpt_path last)"


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
