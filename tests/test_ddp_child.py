"""A child trained with DDP on 2 CPU processes (gloo), from inside a running search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nasprune.child import ChildTraining
from nasprune.child import distributed
from nasprune.child.metrics import count_params
from nasprune.cli import run


@pytest.mark.slow
def test_a_search_trains_its_child_on_two_ddp_processes(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[distributed.DistributedRun] = []
    train = distributed.train_distributed

    def spy(*args: object) -> distributed.DistributedRun:
        runs.append(train(*args))
        return runs[-1]

    monkeypatch.setattr(distributed, "train_distributed", spy)
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"]["training"].update(epochs=1, devices=2)
    config["data"]["env_kwargs"]["search_space"]["num_layers"] = 2
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    run(["fit", "-c", str(tmp_path / "ddp.yaml"), "--trainer.max_steps=1", "--data.episodes_per_update=1",
         f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false", "--export.enabled=false"])  # fmt: skip

    (child,) = runs
    assert [(r["rank"], r["world_size"], r["backend"]) for r in child.ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    # DDP all-reduces gradients: both ranks end with the same weights
    assert child.ranks[0]["weights_sum"] == child.ranks[1]["weights_sum"]
    assert count_params(child.result.model) == child.result.params
    (line,) = (tmp_path / "lightning_logs" / "version_0" / "history.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert "error" not in record
    assert (record["accuracy"], record["params"], record["flops"]) == (child.result.accuracy, child.result.params, child.result.flops)


def test_a_launched_rank_trains_in_its_own_process(monkeypatch: pytest.MonkeyPatch) -> None:
    assert distributed.needs_own_processes(ChildTraining(devices=2))
    assert not distributed.needs_own_processes(ChildTraining(devices=1))
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not distributed.needs_own_processes(ChildTraining(devices=2))
