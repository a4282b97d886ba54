"""Workers as Ray actors, on this machine or across a cluster: `EpisodeDataModule(backend="ray")`.

Each worker is a Ray actor holding one env, made in the actor by `make_env`, with its own CPU and
GPU reservation. For an env that offers decision copies (`nasprune.decisions`), `RayPool` runs
the evaluation queue of `queue.py` on the actors: each free actor takes the next evaluation at
once. Other envs are stepped: `RayVectorEnv` puts the actors behind gymnasium's `VectorEnv`
interface, so their episodes are played by the same lockstep loop as the other backends
(`rollout.play_episodes`). Either way an episode's content is the same for a seed.

A worker whose process dies (killed, out of memory, a node lost) costs one retry: a fresh actor
replays the episode — the same reset seed, the same actions — and its answer is taken. If that
one dies too, the episode ends with the env's failure reward and `error_kind: WorkerDied` in its
info; the slot gets a fresh actor and the search goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
import ray
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from nasprune.config import ConfigError
from nasprune.controller.env_factory import make_env
from nasprune.controller.queue import Job, Outcome, evaluate
from nasprune.controller.vector import threads_per_worker

log = logging.getLogger(__name__)

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]

# The Ray that a search starts on this machine runs its workers at the search's own priority. Ray's
# default starts them at nice 15, which a cluster wants (its raylet stays responsive), but on one
# machine it hands the children's cores to anything else running: on a quiet 2-core machine a child
# took ~7% longer in a Ray actor than in an async worker, and far longer beside other work.
LOCAL_RAY_CONFIG: dict[str, Any] = {"worker_niceness": 0}


@ray.remote
class EnvWorker:
    """One env in its own Ray worker process; the resources are set per actor with `.options()`."""

    def __init__(self, env_id: str | gym.envs.registration.EnvSpec, env_kwargs: dict[str, Any] | None, max_episode_steps: int | None, threads: int) -> None:
        # torch's threads: set where torch is loaded already, else read by torch from the environment
        # when the env imports it (not imported here: an actor whose env never trains starts without it)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        self.env = make_env(env_id, env_kwargs, max_episode_steps)

    def describe(self) -> tuple[gym.Space, gym.Space, float]:
        """The env's spaces and the reward of a failed episode (its `failure_reward`, else 0)."""
        failure_reward = getattr(self.env.unwrapped, "failure_reward", 0.0)
        return self.env.observation_space, self.env.action_space, float(failure_reward)

    def pid(self) -> int:
        return os.getpid()

    def call(self, name: str, *args: Any) -> Any:
        """The env's method `name` called with `args` (gymnasium's `VectorEnv.call`, per actor)."""
        return self.env.get_wrapper_attr(name)(*args)

    def reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options=options)

    def step(self, action: int) -> StepResult:
        return self.env.step(action)

    def evaluate(self, seed: int | None, actions: Sequence[int]) -> tuple[float, dict[str, Any]]:
        """A queued evaluation (`queue.evaluate`): the episode replayed, its last reward and info."""
        return evaluate(self.env, seed, actions)

    def replay(self, seed: int | None, actions: Sequence[int]) -> tuple[Any, dict[str, Any]] | StepResult:
        """Reset with `seed`, take `actions`; the last answer (the reset's when there are none)."""
        answer: Any = self.env.reset(seed=seed)
        for action in actions:
            answer = self.env.step(action)
        return answer


class RayActors:
    """Ray (started here, or joined) and `num_workers` `EnvWorker` actors; `worker_ids[i]` is the id
    of the actor now in slot `i` (a replacement actor gets a new one)."""

    def __init__(
        self,
        num_workers: int,
        env_id: str | gym.envs.registration.EnvSpec,
        env_kwargs: dict[str, Any] | None = None,
        max_episode_steps: int | None = None,
        worker_resources: dict[str, float] | None = None,
        address: str | None = None,
    ) -> None:
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            local: dict[str, Any] = {"include_dashboard": False, "_system_config": LOCAL_RAY_CONFIG} if address is None else {}
            try:
                ray.init(address=address, configure_logging=False, **local)
            except ConnectionError as err:
                raise ConfigError("data.ray_address", f"cannot join the Ray cluster at {address!r}: {err}") from None
        resources = dict(worker_resources or {})
        num_cpus = float(resources.get("num_cpus", 1))
        self._actor_options = {"num_cpus": num_cpus, "num_gpus": float(resources.get("num_gpus", 0))}
        self._actor_args = (env_id, env_kwargs, max_episode_steps, threads_per_worker(num_workers, num_cpus))
        self.worker_ids = list(range(num_workers))
        self._next_worker_id = num_workers
        self.actors = [self._new_actor() for _ in range(num_workers)]
        # every actor up before the first episode: a search's first update does not wait on actors still
        # starting (Ray starts only about as many worker processes at once as the node has cores), and an
        # env that cannot be made on a worker fails the search here
        described = cast(list[tuple[gym.Space, gym.Space, float]], ray.get([actor.describe.remote() for actor in self.actors]))
        self.spaces_and_failure = described[0]

    def _new_actor(self) -> ActorHandle:
        return EnvWorker.options(**self._actor_options).remote(*self._actor_args)  # type: ignore[attr-defined]  # @ray.remote makes an ActorClass; ray's hints keep the plain class

    def _replace(self, i: int) -> None:
        ray.kill(self.actors[i])
        self.actors[i] = self._new_actor()
        self.worker_ids[i] = self._next_worker_id
        self._next_worker_id += 1

    def close_actors(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        if self._started_ray:
            ray.shutdown()


class RayPool(RayActors):
    """The evaluation queue's workers (`queue.Pool`) as Ray actors: each free actor takes the next job at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failure_reward = self.spaces_and_failure[2]
        self._running: dict[Any, tuple[int, Job]] = {}  # object ref → (slot, job)

    def free(self) -> int:
        return len(self.actors) - len(self._running)

    def submit(self, job: Job) -> None:
        busy = {slot for slot, _ in self._running.values()}
        slot = next(i for i in range(len(self.actors)) if i not in busy)
        self._running[self.actors[slot].evaluate.remote(job.seed, job.episode.actions)] = (slot, job)

    def wait(self) -> list[Outcome]:
        """The evaluations finished by now, at least one: all that are done are taken in one pass, not one wait each."""
        running = list(self._running)
        ray.wait(running, num_returns=1)
        ready, _ = ray.wait(running, num_returns=len(running), timeout=0)
        outcomes: list[Outcome] = []
        for ref in ready:
            slot, job = self._running.pop(ref)
            worker = self.worker_ids[slot]
            try:
                reward, info = ray.get(ref)
            except RayActorError as err:
                outcomes.append((job, self._died(slot, job, err)))
                continue
            outcomes.append((job, (float(reward), info, worker)))
        return outcomes

    def _died(self, slot: int, job: Job, err: RayActorError) -> tuple[float, dict[str, Any], int | None] | None:
        """Slot `slot`'s actor died on `job`: a fresh actor takes the slot; the job is evaluated again once, then penalised."""
        index = job.episode.index
        log.warning("worker %d died (%s) on episode %d; %s", self.worker_ids[slot], type(err).__name__, index,
                    "penalising the episode" if job.retried else "a new worker evaluates it again")  # fmt: skip
        self._replace(slot)
        if not job.retried:
            job.retried = True
            return None
        info = {"error": f"worker died twice: {err}", "error_kind": "WorkerDied", "reward": self.failure_reward}
        return self.failure_reward, info, self.worker_ids[slot]

    def close(self) -> None:
        self.close_actors()


class RayVectorEnv(RayActors, VectorEnv):
    """`num_workers` Ray actors as one gymnasium vector env (autoreset disabled).

    Resetting with `options={"reset_mask": m, "hold": True}` parks the masked slots: they are not
    stepped until their next real reset (the `HoldFinished` protocol of the other backends).
    It takes `RayActors`'s arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        RayActors.__init__(self, *args, **kwargs)
        num_workers = len(self.actors)
        observation_space, action_space, self.failure_reward = self.spaces_and_failure
        self.num_envs = num_workers
        self.single_observation_space, self.single_action_space = observation_space, action_space
        self.observation_space = batch_space(observation_space, num_workers)
        self.action_space = batch_space(action_space, num_workers)
        self.metadata = {"autoreset_mode": AutoresetMode.DISABLED}
        self._parked: list[bool] = [True] * num_workers
        self._seeds: list[int | None] = [None] * num_workers
        self._actions: list[list[int]] = [[] for _ in range(num_workers)]
        self._retried: list[bool] = [False] * num_workers
        self._observations: list[Any] = [observation_space.sample() for _ in range(num_workers)]

    def _batch(self, observations: Sequence[Any]) -> Any:
        return concatenate(
            self.single_observation_space, observations, create_empty_array(self.single_observation_space, self.num_envs)  # type: ignore[arg-type]  # gymnasium hints create_empty_array as possibly None; never for a real space
        )

    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        options = dict(options or {})
        mask = options.pop("reset_mask", np.ones(self.num_envs, dtype=np.bool_))
        hold = options.pop("hold", False)
        seeds = list(seed) if isinstance(seed, Sequence) else [seed] * self.num_envs
        infos: dict[str, Any] = {}
        if hold:
            for i in np.flatnonzero(mask).tolist():
                self._parked[i] = True
            return self._batch(self._observations), infos
        futures: dict[int, Any] = {int(i): self.actors[i].reset.remote(seeds[i], options or None) for i in np.flatnonzero(mask)}
        for i, future in futures.items():
            self._seeds[i], self._actions[i], self._retried[i], self._parked[i] = seeds[i], [], False, False
            try:
                observation, info = ray.get(future)
            except RayActorError as err:
                observation, info = self._retry(i, err)
            self._observations[i] = observation
            infos = self._add_info(infos, info, i)
        return self._batch(self._observations), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        futures: dict[int, Any] = {}
        for i, action in enumerate(np.asarray(actions).tolist()):
            if not self._parked[i]:
                self._actions[i].append(int(action))
                futures[i] = self.actors[i].step.remote(int(action))
        infos: dict[str, Any] = {}
        for i, future in futures.items():
            try:
                answer = ray.get(future)
            except RayActorError as err:
                answer = self._retry(i, err)
            self._observations[i], rewards[i], terminated[i], truncated[i], info = answer
            infos = self._add_info(infos, info, i)
        return self._batch(self._observations), rewards, terminated, truncated, infos

    def _retry(self, i: int, err: RayActorError) -> Any:
        """Slot `i`'s worker died: replay its episode once on a fresh worker, else penalise it."""
        log.warning("worker %d died (%s); %s", self.worker_ids[i], type(err).__name__, "penalising the episode" if self._retried[i] else "retrying the episode on a new worker")
        self._replace(i)
        if not self._retried[i]:
            self._retried[i] = True
            try:
                return ray.get(self.actors[i].replay.remote(self._seeds[i], self._actions[i]))
            except RayActorError as again:
                log.warning("worker %d died too (%s); penalising the episode", self.worker_ids[i], type(again).__name__)
                self._replace(i)
                err = again
        if not self._actions[i]:
            raise RuntimeError(f"no worker could reset episode seed {self._seeds[i]}: {err}") from err
        info = {"error": f"worker died twice: {err}", "error_kind": "WorkerDied", "reward": self.failure_reward}
        return self._observations[i], self.failure_reward, True, False, info

    def call(self, name: str, *args: Any) -> tuple[Any, ...]:
        """Call the envs' method `name` on every actor (a replaced actor starts without past calls)."""
        return tuple(ray.get([actor.call.remote(name, *args) for actor in self.actors]))

    def close_extras(self, **kwargs: Any) -> None:
        self.close_actors()
