"""The rollout loop: N episodes played side by side, the agent acting for all of them in one call per step.

Every way of playing episodes goes through `play_episodes`: one env in this process (N = 1),
`num_envs` copies side by side, and the parallel workers of every backend (a Gymnasium vector
env). The loop sees them all as `Slots`: a row of envs that can be reset with given seeds and
stepped with one action per running episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import iterate

from nasprune.controller.agent import BatchAgent
from nasprune.controller.episode import Episode

# what stepping one slot gives back: observation, reward, episode over, info
Step = tuple[Any, float, bool, dict[str, Any]]


class Slots(Protocol):
    """`num_envs` envs side by side; a round uses the first `len(seeds)` of them."""

    num_envs: int

    def reset(self, seeds: Sequence[int | None]) -> tuple[list[Any], list[dict[str, Any]]]:
        """Start an episode in each of the first `len(seeds)` slots."""

    def step(self, actions: Sequence[int | None]) -> list[Step | None]:
        """Step the slots whose action is not `None` (their episodes are running); `None` for the others."""

    def worker(self, slot: int) -> int | None:
        """The worker that played the episode that just ended in `slot`; `None` in this process."""


def play_episodes(
    slots: Slots,
    agent: BatchAgent,
    first_index: int,
    seeds: Sequence[int | None],
    finished: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """`len(seeds)` episodes, in rounds of `slots.num_envs`, episode `first_index + k` reset with `seeds[k]`.

    An episode that ends early keeps being shown its last observation; the actions the agent
    picks for it then are dropped. `finished` is called with each episode the moment it ends.
    """
    episodes: list[Episode] = []
    for start in range(0, len(seeds), slots.num_envs):
        episodes += _play_round(slots, agent, first_index + start, seeds[start : start + slots.num_envs], finished)
    return episodes


def _play_round(
    slots: Slots, agent: BatchAgent, first_index: int, seeds: Sequence[int | None], finished: Callable[[Episode], None] | None
) -> list[Episode]:
    """One round: an episode's `seconds` is the time from the round's start until its end was seen."""
    started = time.perf_counter()
    observations, infos = slots.reset(seeds)
    episodes = [Episode(first_index + i, [], [], [], info) for i, info in enumerate(infos)]
    states = agent.initial_states(len(episodes))
    running = [True] * len(episodes)
    while any(running):
        actions, states = agent.act_batch(observations, states)
        taken = [int(action) if run else None for action, run in zip(actions, running)]
        for episode, observation, action in zip(episodes, observations, taken):
            if action is not None:
                episode.observations.append(observation)
                episode.actions.append(action)
        for i, result in enumerate(slots.step(taken)):
            if result is None:
                continue
            observations[i], reward, done, info = result
            episodes[i].rewards.append(float(reward))
            if done:
                episodes[i].info = info
                episodes[i].seconds = time.perf_counter() - started
                episodes[i].worker = slots.worker(i)
                running[i] = False
                if finished is not None:
                    finished(episodes[i])
    return episodes


class EnvSlots:
    """Envs of this process, each stepped directly (no batching: the cheapest way for a tabular env)."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)
        self.num_envs = len(self.envs)

    def reset(self, seeds: Sequence[int | None]) -> tuple[list[Any], list[dict[str, Any]]]:
        observations, infos = [], []
        for env, seed in zip(self.envs, seeds):
            observation, info = env.reset(seed=seed)
            observations.append(observation)
            infos.append(info)
        return observations, infos

    def step(self, actions: Sequence[int | None]) -> list[Step | None]:
        results: list[Step | None] = []
        for env, action in zip(self.envs, actions):
            if action is None:
                results.append(None)
                continue
            observation, reward, terminated, truncated, info = env.step(action)
            results.append((observation, float(reward), terminated or truncated, info))
        return results

    def worker(self, slot: int) -> int | None:
        return None


class VectorSlots:
    """A Gymnasium vector env whose sub-envs are `HoldFinished` (see `vector.py`): the parallel workers.

    Unused slots and finished episodes are parked: the vector env steps them with a dummy action
    they ignore. The worker of a slot is `vector_env.worker_ids[slot]` where the backend replaces
    workers (Ray), else the slot.
    """

    def __init__(self, vector_env: VectorEnv) -> None:
        self.vector_env = vector_env
        self.num_envs = vector_env.num_envs

    def reset(self, seeds: Sequence[int | None]) -> tuple[list[Any], list[dict[str, Any]]]:
        n = len(seeds)
        active = np.arange(self.num_envs) < n
        batched, infos = self.vector_env.reset(seed=[*seeds, *[None] * (self.num_envs - n)], options={"reset_mask": active})  # type: ignore[arg-type]  # VectorEnv.reset hints one seed; every gymnasium backend takes a list
        observations = list(iterate(self.vector_env.observation_space, batched))[:n]
        return observations, [unbatch_info(infos, i) for i in range(n)]

    def step(self, actions: Sequence[int | None]) -> list[Step | None]:
        padded = [*actions, *[None] * (self.num_envs - len(actions))]
        batched, rewards, terminated, truncated, infos = self.vector_env.step(np.array([a or 0 for a in padded]))
        stepped = list(iterate(self.vector_env.observation_space, batched))
        results: list[Step | None] = []
        ended = np.zeros(self.num_envs, dtype=np.bool_)
        for i, action in enumerate(actions):
            if action is None:
                results.append(None)
                continue
            done = bool(terminated[i] or truncated[i])
            results.append((stepped[i], float(rewards[i]), done, unbatch_info(infos, i) if done else {}))
            ended[i] = done
        if ended.any():
            self.vector_env.reset(options={"reset_mask": ended, "hold": True})
        return results

    def worker(self, slot: int) -> int | None:
        return int(getattr(self.vector_env, "worker_ids", range(self.num_envs))[slot])


def unbatch_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Env `i`'s own info from a vector env's batched info (`info[key]` arrays, `_key` masks)."""
    out: dict[str, Any] = {}
    for key, value in infos.items():
        mask = infos.get(f"_{key}")
        if key.startswith("_") or mask is None or not mask[i]:
            continue
        out[key] = unbatch_info(value, i) if isinstance(value, dict) else value[i]
    return out
