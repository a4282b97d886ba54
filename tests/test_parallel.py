"""Parallel workers on one machine: same episodes as in-process play, one process per worker.

"Identical in content" means: for the same seeds, the same `num_workers` and the same torch
threads per child training (float reductions depend on them), every episode — its
index, actions, rewards, design and every metric of its info — is the same whether its round is
played by worker processes (`backend: async`) or in this process (`backend: sync`, and the
existing `num_envs` lockstep with `num_envs = num_workers`). Only `seconds*` (timings) and
`worker` may differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
import pytorch_lightning as pl
import torch
from test_cli import read_history

from nasprune.cli import run
from nasprune.config import ConfigError
from nasprune.controller import EpisodeDataModule, Reinforce
from nasprune.controller.vector import available_cores


def content(records: list[dict]) -> list[dict]:
    return sorted(
        ({k: v for k, v in r.items() if not k.startswith("seconds") and k != "worker"} for r in records),
        key=lambda r: r["episode"],
    )


def play(data: EpisodeDataModule, n: int) -> list:
    pl.seed_everything(1)  # the agent alone decides the draws: same weights, same sampling
    agent = Reinforce(data.observation_space, data.action_space)
    episodes = data.play_batch(agent, n) + data.play_batch(agent, n)
    data.teardown("fit")
    return episodes


@pytest.mark.slow
def test_a_search_on_worker_processes_writes_the_same_history_as_in_process(repo: Path, tmp_path: Path) -> None:
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"]["training"]["epochs"] = 1
    config["data"]["env_kwargs"]["search_space"].update(num_layers=2, widths=[4, 8], ops=["conv3x3", "sepconv3x3", "maxpool3x3"])
    # torch's float reductions depend on the thread count: the workers train with the same threads as this process
    config["data"]["worker_resources"] = {"num_cpus": torch.get_num_threads()}
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(config))

    def search(backend: str) -> list[dict]:
        root = tmp_path / backend
        run(["fit", "-c", str(tiny), "--trainer.max_steps=1", "--data.episodes_per_update=3", "--data.num_workers=2",
             f"--data.backend={backend}", f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
             "--export.enabled=false"])  # fmt: skip
        return read_history(root / "lightning_logs" / "version_0")

    sync, parallel = search("sync"), search("async")
    assert len(parallel) == 3 and content(parallel) == content(sync)
    assert len({json.dumps(r["actions"]) for r in parallel}) > 1
    # the queue: in this process the workers take the evaluations in turn; worker processes as each is free
    assert [r["worker"] for r in sync] == [0, 1, 0]
    assert {r["worker"] for r in parallel} <= {0, 1}
    assert all(r["accuracy"] > 0 and r["seconds"] > 0 for r in parallel)


def test_episodes_of_different_lengths_match_the_num_envs_lockstep() -> None:
    """CartPole episodes end at different steps; each round's early finishers wait parked."""
    made = dict(env_id="CartPole-v1", episodes_per_update=3, seed=7, max_episode_steps=40)
    reference = play(EpisodeDataModule(**made, num_envs=2), 3)
    parallel = play(EpisodeDataModule(**made, num_workers=2, backend="async"), 3)
    assert len({len(e) for e in parallel}) > 1
    assert [(e.index, e.actions, e.rewards) for e in parallel] == [(e.index, e.actions, e.rewards) for e in reference]
    assert [e.record["worker"] for e in parallel] == [0, 1, 0, 0, 1, 0]
    assert all(e.record["worker"] is None for e in reference)


def test_one_process_per_worker_with_its_share_of_the_cores() -> None:
    data = EpisodeDataModule(env_id="worker_envs:ReportWorker-v0", episodes_per_update=4, seed=0, num_workers=2, backend="async")
    episodes = data.play_batch(Reinforce(data.observation_space, data.action_space), 4)
    data.teardown("fit")
    pids = [e.info["pid"] for e in episodes]
    assert pids[0] == pids[2] and pids[1] == pids[3] and len({*pids, os.getpid()}) == 3
    assert [e.info["threads"] for e in episodes] == [max(1, available_cores() // 2)] * 4
    assert [e.worker for e in episodes] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"num_workers": 0}, "data.num_workers"),
        ({"num_workers": 2, "backend": "threads"}, "data.backend"),
        ({"num_workers": 2, "num_envs": 2}, "data.num_envs"),
        ({"num_workers": 2, "worker_resources": {"memory": 1}}, "data.worker_resources.memory"),
        ({"num_workers": 2, "worker_resources": {"num_gpus": 0.5}}, "data.worker_resources.num_gpus"),
    ],
)
def test_bad_worker_settings_name_their_key(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        EpisodeDataModule(env_id="CartPole-v1", **settings)
    assert err.value.key == key
