"""The Ray backend: one actor per worker, the same episodes as in-process play, dead workers retried once then penalised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import pytorch_lightning as pl  # noqa: E402

from nasprune.controller import EpisodeDataModule, Reinforce, episode_seed  # noqa: E402

RUN_SEED = 5


def data_module(backend: str, **env_kwargs: object) -> EpisodeDataModule:
    return EpisodeDataModule(
        env_id="worker_envs:Crashing-v0",
        env_kwargs={"masked": True, **env_kwargs},
        episodes_per_update=4,
        seed=RUN_SEED,
        num_workers=2,
        backend=backend,
    )


def play(data: EpisodeDataModule, updates: int) -> list[list]:
    pl.seed_everything(0)
    agent = Reinforce(data.observation_space, data.action_space)
    return [data.play_batch(agent, 4) for _ in range(updates)]


@pytest.mark.slow
def test_dead_workers_are_retried_once_then_penalised_and_the_search_goes_on(local_ray: None, tmp_path: Path) -> None:
    reference = play(data_module("sync"), 3)
    once, always = episode_seed(RUN_SEED, 1), episode_seed(RUN_SEED, 2)
    data = data_module("ray", crash_once=[once], crash_always=[always], marker_dir=str(tmp_path))
    pl.seed_everything(0)
    agent = Reinforce(data.observation_space, data.action_space)
    first = data.play_batch(agent, 4)

    # episode 1's worker died on its last step; a new worker (id 2) replayed it: same content
    assert (tmp_path / f"crashed-{once}").exists()
    for i in (0, 1, 3):
        assert (first[i].actions, first[i].rewards, first[i].info) == (reference[0][i].actions, reference[0][i].rewards, reference[0][i].info)
    assert [first[0].worker, first[1].worker] == [0, 2]
    # episode 2 killed its first worker and the retry: the env's failure reward, the error recorded
    assert first[2].actions == reference[0][2].actions
    assert first[2].rewards == [0.0, 0.0, 0.0, -1.0]
    assert first[2].info["error_kind"] == "WorkerDied" and first[2].info["reward"] == -1.0
    assert first[2].worker == 4  # workers 3 (the retry) and 4 (its replacement) were started for it

    # the search goes on; a worker killed between updates is replaced at the next reset
    second = data.play_batch(agent, 4)
    os.kill(ray.get(data.workers().vector_env.actors[0].pid.remote()), 9)
    third = data.play_batch(agent, 4)
    for played, expected in ((second, reference[1]), (third, reference[2])):
        assert [(e.index, e.actions, e.rewards, e.info) for e in played] == [(e.index, e.actions, e.rewards, e.info) for e in expected]
    # slot 0 holds worker 4 (episode 2's), slot 1 worker 2 (episode 1's retry); then worker 4 is killed
    assert [e.worker for e in second] == [4, 2, 4, 2]
    assert [e.worker for e in third] == [5, 2, 5, 2]
    data.teardown("fit")


NICENESS_OF_A_WORKER = """
import os, tempfile
os.environ.update(HOME=tempfile.mkdtemp(prefix="ray"), RAY_AUTH_MODE="disabled")
import ray
from nasprune.controller.ray_backend import RayActors
actors = RayActors(1, "CartPole-v1")
pid = ray.get(actors.actors[0].pid.remote())
print(os.nice(0), int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16]))
ray.shutdown()
"""


@pytest.mark.slow
def test_the_ray_a_search_starts_runs_its_workers_at_the_search_priority() -> None:
    """Ray's default nice 15 would hand a child's core to whatever else runs on the machine."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", NICENESS_OF_A_WORKER], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    search, worker = map(int, done.stdout.split())
    assert worker == search
