"""Episodes as Lightning data: a data module that owns the env and its workers and plays them with the controller.

Lightning fetches one batch ahead of the training step. Episodes sampled that early would come
from the weights *before* the previous update, so the controller's `training_step` takes the
`dataloader_iter` instead: Lightning then does not prefetch, and each batch of episodes is
played on demand, inside the step, with the current weights.

Each episode is added to the run's history (`RunHistory`: the count, the best so far) the moment
it ends, then announced, before the update that learns from it, to every callback with an
`on_episode_end(trainer, pl_module, episode)` hook (`HistoryWriter` makes it durable there).

An env that offers decision copies (a NAS env, see `nasprune.decisions`) has each update's
episodes sampled first, side by side, and evaluated from a work queue (`queue.py`); its
episodes are announced in index order. Other envs (CartPole: observations depend on earlier
rewards) are stepped, in rounds of `num_workers`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

import gymnasium as gym
import pytorch_lightning as pl
import torch
from gymnasium.wrappers import TimeLimit
from torch.utils.data import DataLoader, IterableDataset

from nasprune.config import ConfigError, SearchError
from nasprune.controller.agent import BatchAgent
from nasprune.controller.env_factory import make_env
from nasprune.controller.episode import Episode
from nasprune.controller.parallel import WorkerPool, check_worker_settings, start_pool, start_workers
from nasprune.controller.queue import EvaluationQueue
from nasprune.controller.rollout import EnvSlots, Slots, play_episodes
from nasprune.controller.seeds import episode_seed
from nasprune.run_history import RunHistory, run_identity


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

    def __init__(self, source: EpisodeDataModule, agent: BatchAgent) -> None:
        super().__init__()
        self.source = source
        self.agent = agent

    def __iter__(self) -> Iterator[list[Episode]]:
        per_epoch = self.source.updates_per_epoch
        updates = itertools.count() if per_epoch is None else range(per_epoch)
        for _ in updates:
            batch = self.source.play_batch(self.agent, self.source.episodes_per_update)
            if self.source.has_copies() and not self.source.samples_first:
                self.source.remember(episode.info for episode in batch)  # every copy learns what the others evaluated
            yield batch


def _as_is(batch: list[Episode]) -> list[Episode]:
    return batch


def _has_decision_env(env: gym.Env) -> bool:
    """Whether `env` offers decision copies (`nasprune.decisions`): its episodes can be sampled first."""
    try:
        env.get_wrapper_attr("decision_env")
    except AttributeError:
        return False
    return True


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
        max_staleness: int = 0,
        importance_clip: float = 1.0,
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
            max_staleness: for an env whose episodes are sampled first (a NAS env): an update may
                learn from episodes sampled by a policy up to this many updates old. When a
                worker would wait (nothing left to evaluate), the next update's episodes are
                sampled at once with the current policy, so workers do not idle while an update
                waits for its slowest child. 0 (the default): every update learns from episodes of
                its own policy, and a run repeats exactly; above 0 the timing decides which
                episodes are stale, so it does not.
            importance_clip: a stale episode's term in a gradient update is weighted by
                π_now(actions) / π_then(actions), truncated at this (IMPALA's ρ̄; 1: never above 1).
        """
        super().__init__()
        if episodes_per_update < 1:
            raise ConfigError("data.episodes_per_update", f"must be a positive integer, got {episodes_per_update!r}")
        if updates_per_epoch is not None and updates_per_epoch < 1:
            raise ConfigError("data.updates_per_epoch", f"must be a positive integer or null, got {updates_per_epoch!r}")
        if num_envs < 1:
            raise ConfigError("data.num_envs", f"must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ConfigError("data.max_episode_steps", f"must be a positive integer or null, got {max_episode_steps!r}")
        check_worker_settings(num_workers, backend, num_envs, worker_resources)
        if not isinstance(fail_fast_after, int) or fail_fast_after < 0:
            raise ConfigError("data.fail_fast_after", f"must be a non-negative integer, got {fail_fast_after!r}")
        if not isinstance(max_staleness, int) or max_staleness < 0:
            raise ConfigError("data.max_staleness", f"must be a non-negative integer, got {max_staleness!r}")
        if not importance_clip > 0:
            raise ConfigError("data.importance_clip", f"must be positive, got {importance_clip!r}")
        self.save_hyperparameters()
        self.episodes_per_update = episodes_per_update
        self.updates_per_epoch = updates_per_epoch
        self.num_workers = num_workers
        self.backend = backend
        self.seed = seed
        self.env = make_env(env_id, env_kwargs, max_episode_steps)
        # sample, then evaluate: for an env with decision copies (then num_envs has nothing to do)
        self.samples_first = _has_decision_env(self.env)
        if max_staleness > 0 and not self.samples_first:
            raise ConfigError("data.max_staleness", f"needs an env whose episodes are sampled first (one with decision_env()); {env_id!r} is stepped")
        self.max_staleness, self.importance_clip = max_staleness, importance_clip
        copies = 1 if self.samples_first else num_envs
        self.envs = [self.env] + [make_env(env_id, env_kwargs, max_episode_steps) for _ in range(copies - 1)]
        self._env_slots = EnvSlots(self.envs)
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.episodes_played = 0
        self._workers: WorkerPool | None = None
        self._queue: EvaluationQueue | None = None
        self.updates_played = 0  # batches handed out: the version of the policy that samples next
        self._remembered: list[Mapping[str, Any]] = []  # for workers started later
        self._first_failures = FirstFailures(fail_fast_after)
        self.history = RunHistory()

    def _finished(self, episode: Episode) -> None:
        """Stamp the update that learns from `episode`, count it and announce it (the one channel for a finished episode)."""
        trainer = self.trainer
        if trainer is not None:
            episode.update = trainer.global_step  # before its record is built
        self.history.add(episode)
        if trainer is not None:
            for callback in trainer.callbacks:  # type: ignore[attr-defined]  # Lightning sets Trainer.callbacks at runtime, undeclared
                hook = getattr(callback, "on_episode_end", None)
                if hook is not None:
                    hook(trainer, trainer.lightning_module, episode)
        self._first_failures.check(episode)  # after the callbacks: the failures are in the history

    def has_copies(self) -> bool:
        """Whether episodes are played by more than one env (copies side by side, or workers)."""
        return len(self.envs) > 1 or self.num_workers > 1 or self.backend == "ray"

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
        if self.samples_first:
            return added  # the decision copies answer from the env's cache; evaluators need not know
        if self._workers is not None:
            self._workers.remember(records)
        else:
            self._remembered += records
        return added

    def run_seed(self) -> int:
        """The seed episode seeds derive from (`seed`, or torch's initial seed from `seed_everything`)."""
        return self._run_seed()

    def _run_seed(self) -> int:
        return self.seed if self.seed is not None else torch.initial_seed() % 2**32

    def play(self, agent: BatchAgent) -> Episode:
        """The next episode, in the first env."""
        return self.play_batch(agent, 1)[0]

    def play_batch(self, agent: BatchAgent, n: int) -> list[Episode]:
        """The next `n` episodes: sampled first and evaluated from the queue, or stepped (by the
        workers, or `num_envs` at a time side by side)."""
        if self.samples_first:
            episodes = self._sample_then_evaluate(agent, n)
        else:
            seeds = [self._seed_of(self.episodes_played + i) for i in range(n)]
            episodes = play_episodes(self._slots(), agent, self.episodes_played, seeds, self._finished)
        self.episodes_played += n
        self.updates_played += 1
        return episodes

    def _seed_of(self, index: int) -> int:
        return episode_seed(self._run_seed(), index)

    def _sample_then_evaluate(self, agent: BatchAgent, n: int) -> list[Episode]:
        """Episodes `episodes_played` … + n − 1, announced in index order as they finish.

        Those not sampled yet are sampled now; while waiting, a worker that would idle makes the
        next `episodes_per_update` be sampled (up to `max_staleness` updates ahead)."""
        queue = self.queue()
        first, end = self.episodes_played, self.episodes_played + n
        if queue.sampled < end:
            self._sample(agent, queue, end - queue.sampled)
        ahead = end + self.max_staleness * self.episodes_per_update
        episodes: list[Episode] = []
        while len(episodes) < n:
            taken = queue.take(first + len(episodes))
            if taken is None:
                if queue.sampled < ahead and queue.idle():
                    self._sample(agent, queue, min(self.episodes_per_update, ahead - queue.sampled))
                queue.wait()
                continue
            episode, version = taken
            episode.staleness = self.updates_played - version
            self._finished(episode)
            episodes.append(episode)
        self._weigh(agent, episodes)
        return episodes

    def _sample(self, agent: BatchAgent, queue: EvaluationQueue, n: int) -> None:
        """Sample the next `n` episodes with the current policy (recording its likelihoods when they may go stale)."""
        sampled = queue.sample(agent, [self._seed_of(queue.sampled + i) for i in range(n)], self.updates_played)
        likelihoods = getattr(agent, "log_likelihoods", None)
        if self.max_staleness > 0 and likelihoods is not None:
            for episode, value in zip(sampled, likelihoods(sampled)):
                episode.log_likelihood = value

    def _weigh(self, agent: BatchAgent, episodes: Sequence[Episode]) -> None:
        """Stale episodes' importance weights: π_now / π_then of their actions, truncated at `importance_clip`."""
        stale = [e for e in episodes if e.staleness > 0 and e.log_likelihood is not None]
        if not stale:
            return
        for episode, now in zip(stale, agent.log_likelihoods(stale)):  # type: ignore[attr-defined]  # present: the likelihoods were recorded by it
            assert episode.log_likelihood is not None
            episode.weight = min(math.exp(now - episode.log_likelihood), self.importance_clip)

    def queue(self) -> EvaluationQueue:
        """The evaluation queue and its workers, started on first use."""
        if self._queue is None:
            assert self.env.spec is not None  # gymnasium.make always stamps the env's spec
            self._queue = EvaluationQueue(start_pool(self.hparams, self.env.spec, self.env), self._decision_env, self._learn, self.episodes_played)
        return self._queue

    def _decision_env(self) -> gym.Env:
        decisions = self.env.get_wrapper_attr("decision_env")()
        limit = self.hparams["max_episode_steps"]
        return decisions if limit is None else TimeLimit(decisions, limit)

    def _learn(self, records: list[Mapping[str, Any]]) -> None:
        """An evaluation's info into the env's cache, where its decision copies look."""
        try:
            self.env.get_wrapper_attr("remember")(records)
        except AttributeError:
            return  # the env keeps no cache

    def _slots(self) -> Slots:
        if self.num_workers > 1 or self.backend == "ray":
            return self.workers().slots
        return self._env_slots

    def workers(self) -> WorkerPool:
        """The parallel workers, started on first use (so that building the module stays cheap)."""
        if self._workers is None:
            assert self.env.spec is not None  # gymnasium.make always stamps the env's spec
            self._workers = start_workers(self.hparams, self.env.spec)
            if self._remembered:
                self._workers.remember(self._remembered)
                self._remembered = []
        return self._workers

    def teardown(self, stage: str) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self._queue is not None:
            self._queue.pool.close()  # evaluations still running belong to episodes never learnt from
            self._queue = None

    def train_dataloader(self) -> DataLoader:
        assert self.trainer is not None  # Lightning asks for the loader only while fitting
        agent = cast(BatchAgent, self.trainer.lightning_module)  # the controller being fitted acts in batches
        if self.max_staleness > 0 and getattr(agent, "distinct_designs", False):
            raise ConfigError("data.max_staleness", "does not combine with model.init_args.distinct_designs (its masks hold the designs of the update being played)")
        self.remember(self.history.open(run_identity(self, self.trainer.lightning_module)))  # after any checkpoint is restored
        return DataLoader(EpisodeStream(self, agent), batch_size=None, collate_fn=_as_is)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: how many episodes were played (episode `i` is seeded by `i`), and the run's history."""
        return {"episodes_played": self.episodes_played, "history": self.history.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "history" not in state_dict:
            raise ConfigError("ckpt_path", "the checkpoint holds no run history (an older nasprune wrote it); start a new run without --ckpt_path")
        self.episodes_played = int(state_dict["episodes_played"])
        self.history.load_state_dict(state_dict["history"])
