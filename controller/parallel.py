"""Choosing and starting the parallel workers of `EpisodeDataModule` from its config.

`backend` picks the engine: gymnasium's vector envs on this machine (`sync`, `async`) or Ray
actors on this machine or a cluster (`ray`, see `ray_backend.py`). Envs that are stepped get
their workers behind one small interface, `WorkerPool`; envs whose episodes are sampled first get
a `queue.Pool` of evaluators (`start_pool`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import torch

from nasprune.config import ConfigError

if TYPE_CHECKING:
    from nasprune.controller.queue import Pool
    from nasprune.controller.rollout import Slots

BACKENDS = ("async", "ray", "sync")
WORKER_RESOURCES = ("num_cpus", "num_gpus")


class WorkerPool(Protocol):
    """The workers as the rollout loop's `slots`; gives them back at `close`."""

    slots: Slots

    def remember(self, records: list[Mapping[str, Any]]) -> None:
        """Hand finished evaluations to every worker's env cache (a no-op for envs without one)."""

    def close(self) -> None: ...


def check_worker_settings(
    num_workers: int, backend: str, num_envs: int, worker_resources: Mapping[str, float] | None
) -> None:
    """Fail before anything starts, naming the key."""
    if num_workers < 1:
        raise ConfigError("data.num_workers", f"must be a positive integer, got {num_workers!r}")
    if backend not in BACKENDS:
        raise ConfigError("data.backend", f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if num_workers > 1 and num_envs > 1:
        raise ConfigError("data.num_envs", "set num_envs or num_workers, not both (workers already play side by side)")
    for key, value in (worker_resources or {}).items():
        if key not in WORKER_RESOURCES:
            raise ConfigError(f"data.worker_resources.{key}", f"unknown resource; allowed: {', '.join(WORKER_RESOURCES)}")
        if value < 0:
            raise ConfigError(f"data.worker_resources.{key}", f"must be non-negative, got {value!r}")
    num_gpus = (worker_resources or {}).get("num_gpus", 0)
    if backend == "async" and num_gpus != int(num_gpus):
        raise ConfigError("data.worker_resources.num_gpus", f"must be a whole number with backend async, got {num_gpus!r}")
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("data.backend", "ray is not installed; pip install 'nasprune[ray]'") from None


def start_workers(hparams: Mapping[str, Any], spec: gym.envs.registration.EnvSpec) -> WorkerPool:
    """The workers `hparams` (the data module's) ask for, each making the env of `spec`.

    `spec` is the parent's made env's: workers need not have the env's id registered (a spawned
    process or a Ray actor has imported none of the modules that register ids).

    Making envs may draw from torch's global generator (a NAS env initialises networks to
    measure its reference cost): workers start under a forked generator, so starting them does
    not change the controller's draws.
    """
    with torch.random.fork_rng(devices=[]):
        return _start_workers(hparams, spec)


def start_pool(hparams: Mapping[str, Any], spec: gym.envs.registration.EnvSpec, env: gym.Env) -> Pool:
    """The evaluators of the queue `hparams` ask for: `env` itself (one worker in this process),
    `num_workers` env copies here (`sync`), processes (`async`) or Ray actors (`ray`); started
    under a forked generator, as `start_workers`'s are."""
    from nasprune.controller.queue import LocalPool, ProcessPool
    from nasprune.controller.vector import worker_env_fns

    num_workers, backend = hparams["num_workers"], hparams["backend"]
    resources = dict(hparams["worker_resources"] or {})
    with torch.random.fork_rng(devices=[]):
        if backend == "ray":
            from nasprune.controller.ray_backend import RayPool

            return RayPool(num_workers, spec, hparams["env_kwargs"], hparams["max_episode_steps"], resources, hparams["ray_address"])
        if num_workers == 1:
            return LocalPool([env], [None])
        env_fns = worker_env_fns(num_workers, spec, hparams["env_kwargs"], hparams["max_episode_steps"], resources)
        if backend == "sync":
            return LocalPool([make() for make in env_fns], range(num_workers))
        return ProcessPool(env_fns)


def _start_workers(hparams: Mapping[str, Any], spec: gym.envs.registration.EnvSpec) -> WorkerPool:
    env = (spec, hparams["env_kwargs"], hparams["max_episode_steps"])
    resources = dict(hparams["worker_resources"] or {})
    from nasprune.controller.vector import VectorWorkers, make_vector_env

    if hparams["backend"] == "ray":
        from nasprune.controller.ray_backend import RayVectorEnv

        return VectorWorkers(partial(RayVectorEnv, hparams["num_workers"], *env, resources, hparams["ray_address"]))
    return VectorWorkers(partial(make_vector_env, hparams["backend"], hparams["num_workers"], *env, resources))
