"""Episodes played by parallel workers through Gymnasium vector envs, the controller acting in lockstep.

A batch of episodes is played in rounds of `num_workers`: every worker holds one env; each round
resets them with the episodes' own seeds, the controller acts for all of them in one batched
call per step (as `EpisodeDataModule(num_envs=...)` does in one process), and the workers step
their envs concurrently. For a NAS env the steps are cheap until the last one, which trains the
child: that is where the workers overlap.

The rollout loop (`rollout.play_episodes`, through `VectorWorkers`) serves gymnasium's
`SyncVectorEnv` (in process, the reference run), `AsyncVectorEnv` (one process per worker) and the Ray backend (`RayVectorEnv`, one actor per
worker). Given the run seed, the episodes' content — actions, designs, rewards, metrics — is the
same for all three, and the same as with `num_envs` equal to `num_workers`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, SupportsFloat, cast

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.async_vector_env import AsyncState

from nasprune.config import ConfigError, SearchError
from nasprune.controller.env_factory import make_env
from nasprune.controller.rollout import Slots, Step, VectorSlots

log = logging.getLogger(__name__)


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
    import torch  # here, not at the top: workers of envs that never train start without torch (½ GB and seconds each)

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
        import torch

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


class WorkerDiedError(SearchError):
    """An `async` worker process died again on the same episodes (a replayed round, an evaluation
    taken again); the message is one line naming it."""


def _dead_workers(vector_env: VectorEnv, wait: float = 5.0) -> list[tuple[int, int | None]]:
    """(slot, exit code) of each worker process of an `AsyncVectorEnv` that has died, waiting up
    to `wait` seconds for one (its pipe closes a moment before its exit can be collected)."""
    processes = getattr(vector_env, "processes", [])
    deadline = time.monotonic() + wait
    while True:
        dead = [(i, process.exitcode) for i, process in enumerate(processes) if not process.is_alive()]
        if dead or not processes or time.monotonic() > deadline:
            return dead
        time.sleep(0.01)


def exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        return f"killed by {name}" + (" (the out-of-memory killer sends it)" if name == "SIGKILL" else "")
    return f"exit code {exitcode}"


class VectorWorkers:
    """The workers of `EpisodeDataModule(num_workers=N)`: any backend's vector env, played by the
    rollout loop as its `slots`.

    An `async` worker whose process dies (killed, out of memory) costs one replay: the workers are
    started again, the round so far is replayed on them — the same seeds, the same actions, so
    the same episodes, whose results were already taken are not reported twice — and the round
    goes on; the dead slot's worker gets a new id. A worker that dies again in the replayed round
    stops the search with `WorkerDiedError`. (Ray replaces its actors itself, see `ray_backend.py`.)
    """

    def __init__(self, start: Callable[[], VectorEnv]) -> None:
        self._start = start
        self.vector_env = start()
        self.num_envs = self.vector_env.num_envs
        self.slots: Slots = self
        self._inner = VectorSlots(self.vector_env)
        self.worker_ids = list(range(self.num_envs))
        self._seeds: Sequence[int | None] = []
        self._steps: list[Sequence[int | None]] = []  # the round's actions so far
        self._replayed = False
        self._records: list[Mapping[str, Any]] = []  # what replacement workers' caches must learn again

    def reset(self, seeds: Sequence[int | None]) -> tuple[list[Any], list[dict[str, Any]]]:
        self._seeds, self._steps, self._replayed = seeds, [], False
        return self._survive(lambda: self._inner.reset(seeds))

    def step(self, actions: Sequence[int | None]) -> list[Step | None]:
        self._steps.append(actions)
        return self._survive(lambda: self._inner.step(actions))

    def worker(self, slot: int) -> int | None:
        return int(getattr(self.vector_env, "worker_ids", self.worker_ids)[slot])

    def _survive(self, call: Callable[[], Any]) -> Any:
        """`call()`, or, when a worker process died during it, the same answer from new workers."""
        try:
            return call()
        except (EOFError, ConnectionError) as err:
            dead = _dead_workers(self.vector_env)
            if not dead:
                raise
            names = ", ".join(f"worker {self.worker_ids[i]} ({exit_reason(code)})" for i, code in dead)
            if self._replayed:
                self._discard()
                raise WorkerDiedError(f"{names} died again while its round was replayed; the search stopped (resume it with --ckpt_path last)") from err
            log.warning("%s died; starting new workers and replaying the round", names)
            self._replace(dead)
            self._replayed = True
            return self._survive(self._replay)

    def _replay(self) -> Any:
        """The round again on the new workers: reset with its seeds, its steps re-taken; the last call's answer."""
        answer: Any = self._inner.reset(self._seeds)
        for actions in self._steps:
            answer = self._inner.step(actions)
        return answer

    def _discard(self) -> None:
        """Stop all of the workers (one is dead already)."""
        vector_env = cast(AsyncVectorEnv, self.vector_env)  # only async workers die here (Ray replaces its actors itself)
        for process in vector_env.processes:  # the others are stopped first, so none reports the broken pipes
            process.kill()
            process.join()
        # the vector env waits on the dead pipe; gymnasium resets this state itself after a worker error
        vector_env._state = AsyncState.DEFAULT
        vector_env.close(terminate=True)

    def _replace(self, dead: Sequence[tuple[int, int | None]]) -> None:
        self._discard()
        self.vector_env = self._start()
        self._inner = VectorSlots(self.vector_env)
        for i, _ in dead:
            self.worker_ids[i] = max(self.worker_ids) + 1
        if self._records:
            self.vector_env.call("remember", self._records)  # type: ignore[attr-defined]  # every backend (Sync, Async, Ray) has call; gymnasium's VectorEnv does not declare it

    def remember(self, records: list[Mapping[str, Any]]) -> None:
        self._records += records
        self.vector_env.call("remember", records)  # type: ignore[attr-defined]  # every backend (Sync, Async, Ray) has call; gymnasium's VectorEnv does not declare it

    def close(self) -> None:
        self.vector_env.close()
