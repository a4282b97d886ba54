"""configs/logger/wandb.yaml: W&B mirrors the TensorBoard curves, offline (no network here)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb.proto import wandb_internal_pb2

from nasprune.cli import main
from nasprune.config import resolve_config_path

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of length-prefixed chunks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """The protobuf records of an offline run's `.wandb` file.

    wandb 0.31 moved its reader into the Go core, so the log format is read here: a 7-byte file
    header, then per chunk a 7-byte header (crc32, length, type) within 32 KiB blocks.
    """
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, payload = 7, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            break
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        payload = chunk if kind in (FULL, FIRST) else payload + chunk
        if kind in (FULL, LAST):
            yield wandb_internal_pb2.Record.FromString(payload)


def test_the_overlay_is_packaged() -> None:
    assert Path(resolve_config_path("configs/logger/wandb.yaml")).is_file()
    assert Path(resolve_config_path("logger/wandb")).parent.name == "logger"


def test_offline_run_mirrors_the_tensorboard_tags(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)  # the overlay writes under runs/digits, relative to here
    main(
        [
            "fit",
            "-c",
            str(repo / "configs" / "cartpole.yaml"),
            "-c",
            str(repo / "configs" / "logger" / "wandb.yaml"),
            "--trainer.max_steps=2",
            "--top_k.every_n_updates=1",
            "--trainer.enable_progress_bar=false",
        ]
    )
    (run_file,) = (tmp_path / "runs" / "digits" / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[str, list[float]] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(item.value_json)
    expected = {
        "search/reward",
        "search/reward_best",
        "search/baseline",
        "search/entropy",
        "search/policy_loss",
        "search/loss",
        "search/episodes",
        "episode/reward",
        "episode/length",
        "hp_metric",
        "trainer/global_step",
    }
    assert expected <= set(history)
    assert any(key.startswith("search/top_k/") for key in history)  # the table, as a wandb.Table
    # the same numbers as TensorBoard, which the overlay keeps as the first logger
    events = EventAccumulator(str(tmp_path / "runs" / "digits" / "lightning_logs" / "version_0"))
    events.Reload()
    for tag in ("search/reward", "episode/reward"):
        assert [float(v) for v in history[tag]] == pytest.approx([e.value for e in events.Scalars(tag)], rel=1e-6), tag
    assert len(history["episode/reward"]) == 16
