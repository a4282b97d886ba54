"""Fault injection: each kind of failing child earns the penalty, is recorded, and the search goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

import nasprune.envs  # noqa: F401  (registers nasprune/NasPrune-v0)
from nasprune.records import read_history
from nasprune.child import DigitsDataModule
from nasprune.child.failures import FailureLog, check_fits_input, classify
from nasprune.child.model import build_model
from nasprune.child.search_space import Design, LayerDesign
from nasprune.cli import main, run

CONV = [0, 1, 0, 1, 1, 0]  # conv3x3:8@0 | sepconv3x3:8@0 in the tiny space


class RaisingDigits(DigitsDataModule):
    """Its training loader breaks."""

    def train_dataloader(self) -> DataLoader:
        raise RuntimeError("the loader broke")


class OutOfMemoryDigits(DigitsDataModule):
    """Training runs out of (accelerator) memory."""

    def train_dataloader(self) -> DataLoader:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class NaNDigits(DigitsDataModule):
    """Every training image is NaN, so the very first loss is NaN."""

    def train_dataloader(self) -> DataLoader:
        x, y = self.train_set.tensors
        return DataLoader(TensorDataset(torch.full_like(x, float("nan")), y), batch_size=64)


class EmptyImages(DigitsDataModule):
    """Images of 0×0 pixels: no design can take them, and none should be trained on them.

    Today's ops keep the spatial size, so only an empty input is too small for a design; the env
    is built on digits (its reference costs need a design that fits) and meets these at evaluation.
    """

    input_shape = (1, 0, 0)
    loaders = 0

    def train_dataloader(self) -> DataLoader:
        EmptyImages.loaders += 1
        return super().train_dataloader()


def play(env: gym.Env, actions: list[int]) -> tuple[float, dict]:
    env.reset(seed=0)
    for action in actions:
        _, reward, terminated, _, info = env.step(action)
    assert terminated
    return reward, info


@pytest.mark.parametrize(
    ("datamodule", "kind", "message"),
    [
        (RaisingDigits, "exception", "RuntimeError: the loader broke"),
        (OutOfMemoryDigits, "out_of_memory", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
        (NaNDigits, "non_finite_loss", "NonFiniteLossError: training loss became nan at epoch 0, batch 0"),
        (EmptyImages, "invalid_design", "InvalidDesignError: does not fit the input shape (1, 0, 0): "),
    ],
    ids=["raises", "out-of-memory", "nan-loss", "invalid-for-input"],
)
def test_each_failure_kind_earns_the_penalty_and_is_recorded(
    tiny_env_kwargs: dict, caplog: pytest.LogCaptureFixture, datamodule: type, kind: str, message: str
) -> None:
    if datamodule is EmptyImages:
        env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs, failure_reward=-2.5)
        env.unwrapped.datamodule = EmptyImages()
    else:
        env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs, datamodule=datamodule(), failure_reward=-2.5)
    with caplog.at_level(logging.WARNING, logger="nasprune.envs.nasprune_env"):
        reward, info = play(env, CONV)
    assert reward == -2.5 == info["reward"]
    assert info["error_kind"] == kind and info["error"].startswith(message)
    assert info["design_str"] == "conv3x3:8@0 | sepconv3x3:8@0" and "accuracy" not in info
    (record,) = caplog.records
    assert f"child failed ({kind}): conv3x3:8@0 | sepconv3x3:8@0: {message}" in record.getMessage()
    if datamodule is EmptyImages:
        assert EmptyImages.loaders == 0  # found before any training


def test_a_search_whose_children_all_fail_runs_to_its_end_and_says_so_once(
    repo: Path, tmp_path: Path, tiny_env_kwargs: dict, caplog: pytest.LogCaptureFixture
) -> None:
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs, datamodule={"class_path": "test_failures.RaisingDigits"}, cache=False)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with caplog.at_level(logging.WARNING, logger="nasprune.envs.nasprune_env"):
        run(["fit", "-c", str(tmp_path / "c.yaml"), "--trainer.max_steps=3", "--data.episodes_per_update=2", f"--trainer.default_root_dir={tmp_path}",
             "--trainer.enable_progress_bar=false"])  # fmt: skip
    history = read_history(next(tmp_path.glob("lightning_logs/version_0/history.jsonl")))
    assert len(history) == 6
    assert {(h["reward"], h["error_kind"], h["error"]) for h in history} == {(-1.0, "exception", "RuntimeError: the loader broke")}
    assert len([r for r in caplog.records if "child failed" in r.getMessage()]) == 1


def test_repeated_failures_are_summarised_not_repeated(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("test.failures"))
    with caplog.at_level(logging.WARNING, logger="test.failures"):
        for i in range(120):
            failures.record("out_of_memory", f"OutOfMemoryError: try {i}", "conv3x3:8@0")
        failures.record("exception", "ValueError: x", "identity")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "child failed (out_of_memory): conv3x3:8@0: OutOfMemoryError: try 0; it gets the failure reward, the search goes on",
        "10 children have failed with out_of_memory so far (latest: conv3x3:8@0: OutOfMemoryError: try 9)",
        "100 children have failed with out_of_memory so far (latest: conv3x3:8@0: OutOfMemoryError: try 99)",
        "child failed (exception): identity: ValueError: x; it gets the failure reward, the search goes on",
    ]
    assert failures.counts == {"out_of_memory": 120, "exception": 1}


def test_a_design_that_fits_passes_the_dry_run_and_errors_become_one_line() -> None:
    net = build_model(Design((LayerDesign("conv3x3", 8),)), 1, 10, 8)
    check_fits_input(net, (1, 8, 8), 10)
    assert net.training  # left as it was found
    kind, message = classify(RuntimeError("two\nlines " + "x" * 400))
    assert kind == "exception" and "\n" not in message and len(message) == len("RuntimeError: ") + 300


class FolderDigits(DigitsDataModule):
    """Digits read from `root/digits.npz` (a data root a user can get wrong)."""

    def __init__(self, root: str = "data") -> None:
        super().__init__()
        self.root = root

    def setup(self, stage: str | None = None) -> None:
        with np.load(Path(self.root) / "digits.npz") as data:
            self.train_set = self.val_set = TensorDataset(torch.from_numpy(data["x"]), torch.from_numpy(data["y"]))


@pytest.mark.parametrize("corrupt", [False, True], ids=["missing", "corrupt"])
def test_a_missing_or_corrupt_data_root_is_one_line_naming_the_path(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, corrupt: bool
) -> None:
    root = tmp_path / "data"
    if corrupt:
        root.mkdir()
        (root / "digits.npz").write_bytes(b"not a numpy archive")
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"]["datamodule"] = {"class_path": "test_failures.FolderDigits", "init_args": {"root": str(root)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(tmp_path / "c.yaml"), f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("nasprune: error:")]
    assert line.startswith("nasprune: error: data.env_kwargs.datamodule: ") and str(root) in line
    assert "Traceback" not in err and not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--history.fsync_interval=-1", "nasprune: error: history.fsync_interval: must be >= 0 seconds, got -1.0"),
        ("--history.history_file=sub/h.jsonl", "nasprune: error: history.history_file: must be a plain file name (it goes into the run directory), got 'sub/h.jsonl'"),
        ("--data.env_kwargs.cache=sometimes", "nasprune: error: data.env_kwargs.cache: must be true or false, got 'sometimes'"),
        ("--data.env_kwargs.failure_reward=.nan", "nasprune: error: data.env_kwargs.failure_reward: must be a finite number, got nan"),
    ],
)
def test_bad_settings_of_a_durable_search_are_one_line(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, line: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(repo / "configs" / "digits.yaml"), f"--trainer.default_root_dir={tmp_path}", flag])
    assert exit_info.value.code == 2
    assert [entry for entry in capsys.readouterr().err.splitlines() if entry.startswith("nasprune: error:")] == [line]
    assert not (tmp_path / "lightning_logs").exists()
