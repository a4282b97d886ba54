"""history.jsonl: written per finished episode before the update that uses it, fsynced before checkpoints,
and read back without ever failing on a torn last line."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

import toy_envs  # noqa: F401  (registers TargetSequence-v0)
from nasprune.callbacks import HistoryWriter
from nasprune.records import HistoryError, read_history
from nasprune.controller import EpisodeDataModule, Reinforce


def write_lines(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_lines(tmp_path / "h.jsonl", '{"episode": 0, "reward": 1.0}\n{"episode": 1, "reward": 2.0}\n{"episode": 2, "rew')
    with caplog.at_level(logging.WARNING):
        assert read_history(path) == [{"episode": 0, "reward": 1.0}, {"episode": 1, "reward": 2.0}]
    (record,) = caplog.records
    assert record.getMessage() == f"{path}: skipping a torn last line (19 bytes; the run was stopped while writing it)"


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "h.jsonl", '{"episode": 0}\n{"episode": 1}')
    assert read_history(path) == [{"episode": 0}, {"episode": 1}]
    assert read_history(tmp_path / "missing.jsonl") == []


def test_corruption_before_the_last_line_names_the_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "h.jsonl", '{"episode": 0}\n{"episo\n{"episode": 2}\n')
    with pytest.raises(HistoryError, match=r"h\.jsonl: line 2 is not JSON \(Unterminated string"):
        read_history(path)
    with pytest.raises(HistoryError, match="line 1 is not a JSON object"):
        read_history(write_lines(tmp_path / "list.jsonl", "[1, 2]\n"))


class CheckingReinforce(Reinforce):
    """Checks, at each update, that the batch it learns from is already in history.jsonl on disk."""

    history_path: Path

    def training_step(self, dataloader_iter: Iterator):  # type: ignore[override]
        episodes, batch_idx, dataloader_idx = next(dataloader_iter)
        on_disk = [json.loads(line)["episode"] for line in self.history_path.read_text().splitlines()]
        assert on_disk[-len(episodes) :] == [ep.index for ep in episodes]
        return super().training_step(iter([(episodes, batch_idx, dataloader_idx)]))


def test_episodes_are_on_disk_before_their_update_and_fsynced_before_each_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[str, int]] = []  # (what happened, history lines at that moment)
    real_fsync = os.fsync
    history_path = tmp_path / "history.jsonl"

    def fsync(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(history_path.resolve()):  # best.json and checkpoints have their own
            synced.append(("fsync", len(history_path.read_text().splitlines())))
        real_fsync(fd)

    class Recorder(pl.Callback):
        def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
            synced.append(("checkpoint", pl_module.episodes_done.item()))

    monkeypatch.setattr(os, "fsync", fsync)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=3, seed=0)
    model = CheckingReinforce(data.observation_space, data.action_space)
    model.history_path = history_path
    writer = HistoryWriter(fsync_interval=3600.0)  # fsync only where it must: before each checkpoint
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_steps=3, logger=False, default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[writer, Recorder(), checkpoints])  # fmt: skip
    trainer.fit(model, datamodule=data)
    # the first episode is synced at once (the interval starts there); then one fsync per checkpoint,
    # always just before it, with every episode the checkpoint counts already in the file
    assert synced == [("fsync", 1), ("fsync", 3), ("checkpoint", 3), ("fsync", 6), ("checkpoint", 6), ("fsync", 9), ("checkpoint", 9)]
    assert [h["episode"] for h in read_history(history_path)] == list(range(9))
    assert [h["update"] for h in read_history(history_path)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
