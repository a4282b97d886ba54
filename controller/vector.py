"""Episodes played by parallel workers through Gymnasium vector envs, the controller acting in lockstep.

A batch of episodes is played in rounds of `num_workers`: every worker holds one env; each round
resets them with the episodes' own seeds, the controller acts for all of them in one batched
call per step (as `EpisodeDataModule(num_envs=...)` does in one process), and the workers step
their envs concurrently. For a NAS env the steps are cheap until the last one, which trains the
child: that is where the workers overlap.

The rollout loop (`rollout.play_episodes`, through `rollout.VectorSlots`) serves gymnasium's
`SyncVectorEnv` (in process, the reference run), `AsyncVectorEnv` (one process per worker) and the Ray backend (`RayVectorEnv`, one actor per
worker). Given the run seed, the episodes' content — actions, designs, rewards, metrics — is the
same for all three, and the same as with `num_envs` equal to `num_workers`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, SupportsFloat

import gymnasium as gym
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from nasprune.config import ConfigError
from nasprune.controller.env_factory import make_env
from nasprune.controller.rollout import Slots, VectorSlots


class HoldFinished(gym.Wrapper):
    """An env that can be parked between episodes: `reset(options={"hold": True})` parks it.

    Why: a vector env steps every sub-env on every call, but a round's episodes end at
    different steps and a round may use fewer envs than there are workers. Gymnasium's autoreset
    modes would start a new episode in a finished env (NEXT_STEP, SAME_STEP: for a NAS env an
    unwanted child training); with DISABLED the caller must reset a finished env before the next
    step. So we run with DISABLED and "reset" finished and unused envs into the parked state: a
    parked env answers a step with its last observation and reward 0, without touching the env,
    until a real reset. Envs start parked.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._parked = True
        # the answer of a slot left unused in a round; never shown to the agent
        self._last_observation = env.observation_space.sample()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if options and options.get("hold"):
            self._parked = True
            return self._last_observation, {}
        observation, info = self.env.reset(seed=seed, options=options)
        self._parked = False
        self._last_observation = observation
        return observation, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._parked:
            return self._last_observation, 0.0, False, False, {}
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._last_observation = observation
        return observation, reward, terminated, truncated, info


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(num_workers: int, num_cpus: float | None) -> int:
    """Intra-op threads of each worker: its `num_cpus`, else the cores shared out, so that
    `num_workers` workers never run more threads than there are cores."""
    if num_cpus is not None:
        return max(1, int(num_cpus))
    return max(1, available_cores() // num_workers)


def cuda_devices_of_worker(worker: int, num_gpus: float) -> str | None:
    """The `CUDA_VISIBLE_DEVICES` of one worker: its own slice of `num_gpus` of the visible GPUs."""
    if num_gpus <= 0:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    per_worker = int(num_gpus)
    chosen = ids[worker * per_worker : (worker + 1) * per_worker]
    if len(chosen) < per_worker:
        raise ConfigError(
            "data.worker_resources.num_gpus",
            f"worker {worker} needs {per_worker} GPU(s) but only {len(ids)} are visible ({','.join(ids) or 'none'})",
        )
    return ",".join(chosen)


def make_worker_env(
    env_id: str | gym.envs.registration.EnvSpec,
    env_kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    threads: int,
    cuda_devices: str | None,
    parent_pid: int,
) -> gym.Env:
    """Runs in the worker process: pin its threads (and GPUs) first, then make the env there.

    `AsyncVectorEnv` also calls the first env function once in the parent, for the spaces; the
    parent's own settings are left alone then.
    """
    if os.getpid() != parent_pid:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if cuda_devices is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices
    return HoldFinished(make_env(env_id, env_kwargs, max_episode_steps))


def worker_env_fns(
    num_workers: int,
    env_id: str | gym.envs.registration.EnvSpec,
    env_kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    worker_resources: dict[str, float],
) -> list[Callable[[], gym.Env]]:
    threads = threads_per_worker(num_workers, worker_resources.get("num_cpus"))
    num_gpus = float(worker_resources.get("num_gpus", 0))
    return [
        partial(
            make_worker_env, env_id, env_kwargs, max_episode_steps, threads, cuda_devices_of_worker(i, num_gpus), os.getpid()
        )
        for i in range(num_workers)
    ]


def make_vector_env(
    backend: str,
    num_workers: int,
    env_id: str | gym.envs.registration.EnvSpec,
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    worker_resources: dict[str, float] | None = None,
) -> VectorEnv:
    """`sync`: gymnasium's `SyncVectorEnv` (in this process); `async`: `AsyncVectorEnv`, one
    spawned process per worker (spawned, not forked: a fork of a process running torch's
    thread pools can deadlock)."""
    env_fns = worker_env_fns(num_workers, env_id, env_kwargs, max_episode_steps, dict(worker_resources or {}))
    if backend == "sync":
        return SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.DISABLED)
    return AsyncVectorEnv(env_fns, context="spawn", autoreset_mode=AutoresetMode.DISABLED)


class VectorWorkers:
    """The workers of `EpisodeDataModule(num_workers=N)`: any backend's vector env, played by the rollout loop."""

    def __init__(self, vector_env: VectorEnv) -> None:
        self.vector_env = vector_env
        self.slots: Slots = VectorSlots(vector_env)


    def remember(self, records: list[Mapping[str, Any]]) -> None:
        self.vector_env.call("remember", records)  # type: ignore[attr-defined]  # every backend (Sync, Async, Ray) has call; gymnasium's VectorEnv does not declare it

    def close(self) -> None:
        self.vector_env.close()
