"""Sample, then evaluate: an update's designs are sampled side by side, their evaluations taken from a work queue.

In a NAS env only the last step evaluates, and the decisions before it do not depend on any
evaluation (see `nasprune.decisions`). Within one update the policy is fixed, so all of the
update's episodes are played first on the env's cheap decision copies (the agent acting for all of
them in one batched call per step), and their evaluations go to a queue that each free worker
takes the next one from at once. A worker evaluates an episode by replaying it on its own env:
the episode's reset seed, its actions. So an episode's content depends on its index (its seed)
and the policy alone: the same whatever the timing, the number of workers or the backend, and
finished episodes are handed back in index order.

Episodes with one `evaluation_key` (one design, in an env with a cache) are evaluated once: the
later ones wait for the first, then their decision copies answer them from the env's cache.

An update waits for its last evaluation, so its episodes are dispatched longest first when the env
estimates their costs (`evaluation_cost`): the costliest start at once and the cheap ones fill the
gaps, rather than a costly child started last keeping every other worker idle at the update's end
(the longest-processing-time-first rule). The order changes nothing but the timing: each episode's
evaluation is its own replay, and finished episodes are still handed back in index order.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import gymnasium as gym

from nasprune.controller.agent import BatchAgent
from nasprune.controller.episode import Episode
from nasprune.controller.rollout import EnvSlots, play_episodes
from nasprune.controller.vector import WorkerDiedError, exit_reason
from nasprune.decisions import EVALUATION_COST, EVALUATION_KEY, PENDING

log = logging.getLogger(__name__)


def evaluate(env: gym.Env, seed: int | None, actions: Sequence[int]) -> tuple[float, dict[str, Any]]:
    """An episode's evaluation: `env` replays it (reset with its seed, its actions); the last step's reward and info."""
    env.reset(seed=seed)
    reward, info = 0.0, dict[str, Any]()
    for action in actions:
        _, step_reward, _, _, info = env.step(action)
        reward = float(step_reward)
    return reward, info


@dataclass
class Job:
    """A sampled episode whose last step is to be evaluated."""

    episode: Episode
    seed: int | None
    version: int  # the updates the sampling policy had made
    key: str | None = None  # its `evaluation_key`
    cost: float = 0.0  # its `evaluation_cost` (0 when the env gives none)
    started: float = 0.0
    retried: bool = False  # its worker died once already


# a finished job: (reward, info, worker); None when its worker died and it is to be evaluated again
Outcome = tuple[Job, tuple[float, dict[str, Any], int | None] | None]


class Pool(Protocol):
    """Workers that each evaluate one job at a time."""

    def free(self) -> int:
        """How many workers are waiting for a job."""

    def submit(self, job: Job) -> None:
        """Hand `job` to a waiting worker."""

    def wait(self) -> list[Outcome]:
        """Block until at least one job has finished; those that have."""

    def close(self) -> None: ...


class LocalPool:
    """Workers in this process, evaluating one after the other: `envs[k]` takes every len(envs)-th job.

    With one env (the controller's own, `worker` None) this is `num_workers: 1`; with
    `num_workers` copies it is the `sync` backend, the reference run of the parallel ones.
    """

    def __init__(self, envs: Sequence[gym.Env], worker_ids: Sequence[int | None]) -> None:
        self.envs, self.worker_ids = list(envs), list(worker_ids)
        self._jobs: deque[tuple[int, Job]] = deque()
        self._submitted = 0

    def free(self) -> int:
        return len(self.envs) - len(self._jobs)

    def submit(self, job: Job) -> None:
        self._jobs.append((self._submitted % len(self.envs), job))
        self._submitted += 1

    def wait(self) -> list[Outcome]:
        slot, job = self._jobs.popleft()
        reward, info = evaluate(self.envs[slot], job.seed, job.episode.actions)
        return [(job, (reward, info, self.worker_ids[slot]))]

    def close(self) -> None:
        return None


def serve(conn: Connection, make: Callable[[], gym.Env]) -> None:
    """A worker process: make the env, then evaluate each `(seed, actions)` received until `None`."""
    env = make()
    while (message := conn.recv()) is not None:
        seed, actions = message
        try:
            conn.send(("ok", evaluate(env, seed, actions)))
        except Exception:  # the env's own bug: the controller reports it with the worker's traceback
            conn.send(("error", traceback.format_exc()))
    env.close()


@dataclass
class Worker:
    id: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job: Job | None = None


class ProcessPool:
    """`backend: async`: one spawned process per worker, each holding one env and taking the next job when free.

    Hand-rolled on `multiprocessing` rather than `concurrent.futures.ProcessPoolExecutor`: there a
    dead worker breaks the whole executor (every pending job fails, and which one killed it is
    unknown), and its workers have no identity (the history's `worker`, a GPU slice each).
    (Gymnasium's `AsyncVectorEnv` steps all of its envs together: it cannot run a queue.)

    A worker whose process dies (killed, out of memory) is replaced by a new process with a new
    id, and its job is evaluated again by the next free worker; a job whose second worker dies too
    stops the search with `WorkerDiedError`, one line naming both.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        self._context = multiprocessing.get_context("spawn")  # not fork: a fork of torch's thread pools can deadlock
        self._env_fns = list(env_fns)
        self._next_id = len(self._env_fns)
        self.workers = [self._start(i, i) for i in range(len(self._env_fns))]
        self._first_deaths: dict[int, str] = {}  # episode index → how its first worker died

    def _start(self, slot: int, worker_id: int) -> Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=serve, args=(child, self._env_fns[slot]), daemon=True)
        process.start()
        child.close()  # this end belongs to the worker: once it exits, `parent` reads EOF
        return Worker(worker_id, process, parent)

    def free(self) -> int:
        return sum(worker.job is None for worker in self.workers)

    def submit(self, job: Job) -> None:
        worker = next(w for w in self.workers if w.job is None)
        worker.job = job
        worker.conn.send((job.seed, job.episode.actions))

    def wait(self) -> list[Outcome]:
        busy = [w for w in self.workers if w.job is not None]
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
        outcomes: list[Outcome] = []
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            job = worker.job
            assert job is not None
            try:
                status, answer = worker.conn.recv()
            except (EOFError, ConnectionError):
                self._died(worker, job)
                outcomes.append((job, None))  # evaluated again
                continue
            worker.job = None
            if status == "error":
                self.close()
                raise RuntimeError(f"worker {worker.id} raised evaluating episode {job.episode.index}:\n{answer}")
            reward, info = answer
            outcomes.append((job, (reward, info, worker.id)))
        return outcomes

    def _died(self, worker: Worker, job: Job) -> None:
        """Replace the dead `worker`; its job is evaluated again, unless it already was (the search stops)."""
        worker.process.join(timeout=5)
        how = f"worker {worker.id} ({exit_reason(worker.process.exitcode)})"
        slot = self.workers.index(worker)
        if job.retried:
            self.close()
            raise WorkerDiedError(
                f"{how} died evaluating episode {job.episode.index} again ({self._first_deaths[job.episode.index]} died on it first); "
                "the search stopped (resume it with --ckpt_path last)"
            )
        log.warning("%s died evaluating episode %d; a new worker evaluates it again", how, job.episode.index)
        self._first_deaths[job.episode.index] = how
        job.retried = True
        self.workers[slot] = self._start(slot, self._next_id)
        self._next_id += 1

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, ConnectionError, OSError):
                pass  # already dead
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():  # still evaluating: its result is not wanted any more
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


class EvaluationQueue:
    """Sampled episodes, their evaluations queued for `pool`'s workers; finished episodes taken out in index order.

    `decision_env` makes the decision copies an update's episodes are played on; `learn` hands
    each evaluation's info to the env that keeps the cache the copies read (so a design evaluated
    once is answered from there).
    """

    def __init__(
        self, pool: Pool, decision_env: Callable[[], gym.Env], learn: Callable[[list[Mapping[str, Any]]], object], first_index: int = 0
    ) -> None:
        self.pool = pool
        self._decision_env = decision_env
        self._decisions: list[gym.Env] = []
        self._learn = learn
        self.sampled = first_index  # the index of the next episode to sample
        self._pending: deque[Job] = deque()
        self._running = 0
        self._keys: set[str] = set()  # evaluation keys pending or running
        self._held: dict[str, list[Job]] = {}  # later episodes of a key in flight, in index order
        self._done: dict[int, tuple[Episode, int]] = {}  # finished: episode index → (episode, sampling version)

    def sample(self, agent: BatchAgent, seeds: Sequence[int | None], version: int) -> list[Episode]:
        """Play the next `len(seeds)` episodes' decisions side by side and queue their evaluations."""
        while len(self._decisions) < len(seeds):
            self._decisions.append(self._decision_env())
        episodes = play_episodes(EnvSlots(self._decisions[: len(seeds)]), agent, self.sampled, seeds)
        self.sampled += len(seeds)
        fresh = [job for episode, seed in zip(episodes, seeds) if (job := self._queue(Job(episode, seed, version))) is not None]
        self._pending.extend(sorted(fresh, key=lambda job: -job.cost))  # the costliest first; stable: index order among equals
        return episodes

    def _queue(self, job: Job) -> Job | None:
        """`job` when it is to be evaluated now. An episode its decision copy finished (a cache hit, a
        masked action) is done; one whose key is being evaluated waits for that evaluation."""
        info = job.episode.info
        if not info.get(PENDING):
            self._done[job.episode.index] = (job.episode, job.version)
            return None
        job.key, job.cost = info.get(EVALUATION_KEY), float(info.get(EVALUATION_COST, 0.0))
        if job.key is None or job.key not in self._keys:
            if job.key is not None:
                self._keys.add(job.key)
            return job
        self._held.setdefault(job.key, []).append(job)
        return None

    def idle(self) -> bool:
        """Whether a worker would wait: nothing is pending and a worker is free."""
        self.dispatch()
        return not self._pending and self.pool.free() > 0

    def dispatch(self) -> None:
        """Every free worker takes the next pending job."""
        while self._pending and self.pool.free() > 0:
            job = self._pending.popleft()
            job.started = time.perf_counter()
            self.pool.submit(job)
            self._running += 1

    def take(self, index: int) -> tuple[Episode, int] | None:
        """Episode `index` and the version that sampled it, once it is finished."""
        return self._done.pop(index, None)

    def wait(self) -> None:
        """Dispatch, then wait for at least one evaluation to finish."""
        self.dispatch()
        if self._running == 0:
            raise RuntimeError("waiting for evaluations, but none is running")  # a bug: the data module asked for an episode it never sampled
        for job, result in self.pool.wait():
            self._running -= 1
            if result is None:  # its worker died: the next free worker evaluates it again
                self._pending.appendleft(job)
                continue
            reward, info, worker = result
            episode = job.episode
            episode.rewards[-1], episode.info, episode.worker = reward, info, worker
            episode.seconds = time.perf_counter() - job.started
            self._done[episode.index] = (episode, job.version)
            self._learn([info])
            self._release(job)

    def _release(self, job: Job) -> None:
        """`job` is evaluated: the episodes held on its key ask a decision copy again (the cache knows it now)."""
        if job.key is None:
            return
        self._keys.discard(job.key)
        for held in self._held.pop(job.key, []):
            held.episode.rewards[-1], held.episode.info = evaluate(self._decisions[0], held.seed, held.episode.actions)
            if self._queue(held) is not None:  # not answered from the cache: a failure it does not keep; the next to evaluate
                self._pending.append(held)
