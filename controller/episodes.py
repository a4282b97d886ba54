"""Episodes as Lightning data: a data module that owns the env and plays it with the controller.

Lightning fetches one batch ahead of the training step. Episodes sampled that early would come
from the weights *before* the previous update, so the controller's `training_step` takes the
`dataloader_iter` instead: Lightning then does not prefetch, and each batch of episodes is
played on demand, inside the step, with the current weights.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids)
from nasprune.config import ConfigError, SearchError
from nasprune.controller.parallel import WorkerPool, check_worker_settings, start_workers


class Agent(Protocol):
    """Whatever plays episodes: a recurrent state in, an action and the next state out."""

    def initial_state(self) -> Any: ...

    def act(self, observation: Any, state: Any) -> tuple[int, Any]: ...


class BatchAgent(Agent, Protocol):
    """An agent that can also act for several episodes at once (one batched forward per step)."""

    def initial_states(self, n: int) -> Any: ...

    def act_batch(self, observations: Sequence[Any], states: Any) -> tuple[list[int], Any]: ...


@dataclass
class Episode:
    """One finished episode: the observation before each action, the actions, the rewards."""

    index: int
    observations: list[Any]
    actions: list[int]
    rewards: list[float]
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    worker: int | None = None  # the parallel worker that played it; None when played in this process

    @property
    def total_reward(self) -> float:
        """The undiscounted return."""
        return float(sum(self.rewards))

    def __len__(self) -> int:
        return len(self.actions)

    def metrics(self) -> dict[str, float]:
        """The numeric scalars of the final step's `info` (accuracy, flops, reward parts, …)."""
        return {
            key: float(value)
            for key, value in self.info.items()
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        }


def play_episode(env: gym.Env, agent: Agent, index: int, seed: int | None = None) -> Episode:
    start = time.perf_counter()
    observation, info = env.reset(seed=seed)
    state = agent.initial_state()
    episode = Episode(index, [], [], [], info)
    done = False
    while not done:
        action, state = agent.act(observation, state)
        episode.observations.append(observation)
        episode.actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        episode.rewards.append(float(reward))
        done = terminated or truncated
    episode.info = info
    episode.seconds = time.perf_counter() - start
    return episode


def episode_seed(run_seed: int, index: int) -> int:
    """The reset seed of episode `index`: a function of the run's seed and the index alone.

    Every episode is reseeded, so its randomness (a child's initialisation, CartPole's start)
    does not depend on which env copy or worker plays it, nor on a restart in between.
    """
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])


def play_episodes(envs: Sequence[gym.Env], agent: BatchAgent, first_index: int, seeds: Sequence[int | None]) -> list[Episode]:
    """One episode in each env, side by side: the agent acts for all of them in one call per step.

    An episode that ends early keeps being shown its last observation; the actions the agent
    picks for it then are dropped. Each episode's `seconds` is the batch's time shared equally.
    """
    start = time.perf_counter()
    episodes, observations = [], []
    for i, (env, seed) in enumerate(zip(envs, seeds)):
        observation, info = env.reset(seed=seed)
        episodes.append(Episode(first_index + i, [], [], [], info))
        observations.append(observation)
    states = agent.initial_states(len(envs))
    running = [True] * len(envs)
    while any(running):
        actions, states = agent.act_batch(observations, states)
        for i, (env, episode) in enumerate(zip(envs, episodes)):
            if not running[i]:
                continue
            episode.observations.append(observations[i])
            episode.actions.append(int(actions[i]))
            observations[i], reward, terminated, truncated, info = env.step(actions[i])
            episode.rewards.append(float(reward))
            if terminated or truncated:
                episode.info = info
                running[i] = False
    seconds = (time.perf_counter() - start) / len(envs)
    for episode in episodes:
        episode.seconds = seconds
    return episodes


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """`gymnasium.make` with our envs registered and user errors turned into one config line.

    Any id `gymnasium.make` accepts works, including `my_package.my_module:MyEnv-v0`, which
    imports the user's module (and so registers its env) first.
    """
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        return gym.make(env_id, **kwargs)
    except ConfigError as err:
        raise err.under("data.env_kwargs") from None
    except gym.error.Error as err:
        raise ConfigError("data.env_id", f"{env_id!r} cannot be made: {err}") from None
    except ImportError as err:
        raise ConfigError("data.env_id", f"{env_id!r}: cannot import its module ({err})") from None
    except TypeError as err:
        raise ConfigError("data.env_kwargs", f"{env_id!r} rejected its arguments: {err}") from None


class FirstFailures:
    """Stops a search whose first `limit` episodes all failed the same way (`SearchError`).

    "The same way": the same `error_kind` and exception type (the `Type` of `error: "Type: text"`)
    in the episodes' `info`. One success or a different failure ends the watch: from then on
    failures are the search's own business (a failing child earns a penalty, the search goes on).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failed = 0  # the first episodes, from episode 0 on, that all failed the same way
        self._failure: tuple[str, str] | None = None

    def check(self, episode: Episode) -> None:
        if self.failed != episode.index or self.failed >= self.limit:
            return
        kind, error = episode.info.get("error_kind"), str(episode.info.get("error", ""))
        failure = (str(kind), error.partition(":")[0])
        if kind is None or self._failure not in (None, failure):
            self.limit = 0  # a success or a different failure: the watch is over
            return
        self._failure, self.failed = failure, self.failed + 1
        if self.failed == self.limit:
            raise SearchError(
                f"the first {self.limit} children all failed with {kind} (latest: {error}); the search stopped: "
                "fix the child settings (data.env_kwargs), or raise data.fail_fast_after (0: never stop)"
            )


class EpisodeStream(IterableDataset):
    """Batches of `episodes_per_update` episodes, played on demand: `updates_per_epoch` of them
    per pass, or an endless stream (one epoch, ended by `max_steps`) when that is `None`."""

    def __init__(self, source: EpisodeDataModule, agent: Agent) -> None:
        super().__init__()
        self.source = source
        self.agent = agent

    def __iter__(self) -> Iterator[list[Episode]]:
        per_epoch = self.source.hparams.updates_per_epoch
        updates = itertools.count() if per_epoch is None else range(per_epoch)
        for _ in updates:
            batch = self.source.play_batch(self.agent, self.source.hparams.episodes_per_update)
            if self.source.has_copies():
                self.source.remember(episode.info for episode in batch)  # every copy learns what the others evaluated
            yield batch


def _as_is(batch: list[Episode]) -> list[Episode]:
    return batch


class EpisodeDataModule(pl.LightningDataModule):
    """Owns the environment; plays it with the LightningModule being trained (the agent).

    The env is made here, at construction, so a bad id or bad env arguments fail before any
    training, and so its spaces can be handed to the controller.
    """

    def __init__(
        self,
        env_id: str = "nasprune/NasPrune-v0",
        env_kwargs: dict[str, Any] | None = None,
        episodes_per_update: int = 4,
        max_episode_steps: int | None = None,
        seed: int | None = None,
        num_envs: int = 1,
        updates_per_epoch: int | None = None,
        num_workers: int = 1,
        backend: str = "async",
        ray_address: str | None = None,
        worker_resources: dict[str, float] | None = None,
        fail_fast_after: int = 10,
    ) -> None:
        """
        Args:
            env_id: any id `gymnasium.make` accepts, e.g. `CartPole-v1` or `my_module:MyEnv-v0`.
            env_kwargs: keyword arguments for the env (for NasPrune: search_space, datamodule, training, reward).
            episodes_per_update: episodes played per controller update (the batch).
            max_episode_steps: optional time limit added by `gymnasium.make`.
            seed: the run's env seed; episode `i` is reset with `episode_seed(seed, i)`. By
                default derived from `seed_everything`.
            num_envs: copies of the env whose episodes are played side by side, the agent acting
                for all in one batched call (its `act_batch`). Worth it for cheap envs (a
                tabular benchmark), where acting one step at a time dominates.
            updates_per_epoch: updates that make one Lightning epoch; `None` (the default) makes the
                whole search one epoch. Set it to let epoch-end callbacks run, e.g. `EarlyStopping`
                on `search/reward_recent` with a `stopping_threshold`.
            num_workers: workers that play an update's episodes in parallel, `num_workers` at a
                time, the agent acting for them in one batched call per step. 1: play here.
            backend: `async` (one process per worker: gymnasium's `AsyncVectorEnv`), `ray` (one
                Ray actor per worker, on this machine or a cluster; needs `pip install nasprune[ray]`)
                or `sync` (the same rounds, in this process: the reference run).
            ray_address: the Ray cluster to join (`auto`, `ray://host:10001`, …); `None` starts a
                local Ray (or uses the one already initialised).
            worker_resources: per worker `num_cpus` (its threads; Ray's CPU reservation; default:
                the cores shared out) and `num_gpus` (Ray's GPU reservation; `async` gives each
                worker its own slice of the visible GPUs through `CUDA_VISIBLE_DEVICES`).
            fail_fast_after: stop the search (`SearchError`) when its first this many episodes
                all failed the same way (the same `error_kind` and exception type in their
                `info`): settings that fail every child should not spend the whole budget. 0: never stop.
        """
        super().__init__()
        if episodes_per_update < 1:
            raise ConfigError("data.episodes_per_update", f"must be a positive integer, got {episodes_per_update!r}")
        if updates_per_epoch is not None and updates_per_epoch < 1:
            raise ConfigError("data.updates_per_epoch", f"must be a positive integer or null, got {updates_per_epoch!r}")
        if num_envs < 1:
            raise ConfigError("data.num_envs", f"must be a positive integer, got {num_envs!r}")
        check_worker_settings(num_workers, backend, num_envs, worker_resources)
        if not isinstance(fail_fast_after, int) or fail_fast_after < 0:
            raise ConfigError("data.fail_fast_after", f"must be a non-negative integer, got {fail_fast_after!r}")
        self.save_hyperparameters()
        self.env = make_env(env_id, env_kwargs, max_episode_steps)
        self.envs = [self.env] + [make_env(env_id, env_kwargs, max_episode_steps) for _ in range(num_envs - 1)]
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.episodes_played = 0
        self._workers: WorkerPool | None = None
        # called with each episode as soon as it is finished, before the update that uses it
        # (the history writer makes it durable there)
        self.episode_listeners: list[Callable[[Episode], None]] = []
        self._remembered: list[Mapping[str, Any]] = []  # for workers started later
        self._first_failures = FirstFailures(fail_fast_after)

    def _finished(self, episodes: Sequence[Episode]) -> None:
        for episode in episodes:
            for listener in self.episode_listeners:
                listener(episode)
            self._first_failures.check(episode)

    def has_copies(self) -> bool:
        """Whether episodes are played by more than one env (copies side by side, or workers)."""
        return len(self.envs) > 1 or self.hparams.num_workers > 1 or self.hparams.backend == "ray"

    def remember(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Hand finished evaluations (e.g. this run's history on resume) to every env copy and
        worker that keeps an evaluation cache (an env with a `remember` method); returns the new
        entries. Workers not started yet get them when they start."""
        records = list(records)
        added = 0
        for env in self.envs:
            try:
                remember = env.get_wrapper_attr("remember")
            except AttributeError:
                return 0  # the env keeps no cache (nor do its workers: they run the same env)
            added = max(added, remember(records))
        if self._workers is not None:
            self._workers.remember(records)
        else:
            self._remembered += records
        return added

    def run_seed(self) -> int:
        """The seed episode seeds derive from (`seed`, or torch's initial seed from `seed_everything`)."""
        return self._run_seed()

    def _run_seed(self) -> int:
        return self.hparams.seed if self.hparams.seed is not None else torch.initial_seed() % 2**32

    def play(self, agent: Agent) -> Episode:
        index = self.episodes_played
        episode = play_episode(self.env, agent, index, episode_seed(self._run_seed(), index))
        self.episodes_played += 1
        self._finished([episode])
        return episode

    def play_batch(self, agent: Agent, n: int) -> list[Episode]:
        """`n` episodes: by the workers, one by one, or `num_envs` at a time when the agent has `act_batch`."""
        if self.hparams.num_workers > 1 or self.hparams.backend == "ray":
            seeds = [episode_seed(self._run_seed(), self.episodes_played + i) for i in range(n)]
            episodes = self.workers().play(agent, self.episodes_played, seeds)
            self.episodes_played += n
            self._finished(episodes)
            return episodes
        if len(self.envs) == 1 or not hasattr(agent, "act_batch"):
            return [self.play(agent) for _ in range(n)]
        episodes: list[Episode] = []
        while len(episodes) < n:
            envs = self.envs[: n - len(episodes)]
            seeds = [episode_seed(self._run_seed(), self.episodes_played + i) for i in range(len(envs))]
            played = play_episodes(envs, agent, self.episodes_played, seeds)
            self.episodes_played += len(envs)
            self._finished(played)
            episodes += played
        return episodes

    def workers(self) -> WorkerPool:
        """The parallel workers, started on first use (so that building the module stays cheap)."""
        if self._workers is None:
            self._workers = start_workers(self.hparams)
            if self._remembered:
                self._workers.remember(self._remembered)
                self._remembered = []
        return self._workers

    def teardown(self, stage: str) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def train_dataloader(self) -> DataLoader:
        agent = self.trainer.lightning_module
        return DataLoader(EpisodeStream(self, agent), batch_size=None, collate_fn=_as_is)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: how many episodes were played (episode `i` is seeded by `i`)."""
        return {"episodes_played": self.episodes_played}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.episodes_played = int(state_dict["episodes_played"])
