"""Sample, then evaluate: an update's episodes sampled side by side, their evaluations taken from a work queue.

"The same history" means: for the same seeds every episode — its index, actions, rewards and
every key of its info — is the same whichever backend and however many workers evaluate it, in
whatever order the evaluations finish. Only `seconds` and `worker` may differ.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import gymnasium as gym
import pytest
import pytorch_lightning as pl
import torch
from gymnasium.utils.env_checker import check_env
from test_nasbench201 import write_table

from nasprune.child.search_space import SearchSpace
from nasprune.config import ConfigError
from nasprune.controller import Episode, EpisodeDataModule, Reinforce, episode_seed
from nasprune.controller.queue import EvaluationQueue, Job, LocalPool, evaluate
from nasprune.controller.vector import WorkerDiedError
from nasprune.decisions import EVALUATION_COST, EVALUATION_KEY, PENDING

COSTLY = "worker_envs:CostlyDesigns-v0"


def content(episodes: list[Episode]) -> list[tuple]:
    return [(e.index, e.actions, e.rewards, e.info, e.staleness, e.weight) for e in episodes]


def play(backend: str, workers: int, updates: int = 3, per_update: int = 6, **settings: object) -> tuple[list[Episode], Reinforce]:
    """Updates of REINFORCE (a real gradient step between batches) on the costly-designs env; the episodes and the agent."""
    data = EpisodeDataModule(COSTLY, episodes_per_update=per_update, seed=11, num_workers=workers, backend=backend, **settings)  # type: ignore[arg-type]
    pl.seed_everything(2)
    agent = Reinforce(data.observation_space, data.action_space, lr=0.5)
    optimizer = agent.configure_optimizers()
    played: list[Episode] = []
    try:
        for _ in range(updates):
            batch = data.play_batch(agent, per_update)
            played += batch
            learn(agent, optimizer, batch)
    finally:
        data.teardown("fit")
    return played, agent


def learn(agent: Reinforce, optimizer: torch.optim.Optimizer, batch: list[Episode]) -> None:
    log_probs = agent._replay(batch)[0]
    loss = -(torch.tensor([[e.weight * e.total_reward] for e in batch]) * log_probs).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.fixture(scope="module")
def reference() -> tuple[list[Episode], Reinforce]:
    return play("sync", 1)


def test_an_update_is_sampled_first_then_evaluated_in_index_order(reference: tuple[list[Episode], Reinforce]) -> None:
    reference, _ = reference
    assert [e.index for e in reference] == list(range(18))
    assert all(e.worker is None and e.staleness == 0 and e.weight == 1.0 for e in reference)
    designs = [e.info["design"] for e in reference]
    assert len({d[0] for d in designs}) == 3  # children of every cost
    # a design met again is answered from the cache, never evaluated twice: within an update too
    first_seen = {d: designs.index(d) for d in designs}
    assert [e.info.get("cached", False) for e in reference] == [first_seen[d] != i for i, d in enumerate(designs)]
    assert any(first_seen[d] < i and reference[first_seen[d]].update == e.update for i, (d, e) in enumerate(zip(designs, reference)))
    for episode in reference:
        assert episode.rewards[:-1] == [0.0, 0.0] and episode.rewards[-1] == episode.info["reward"]


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "workers"), [("sync", 2), ("sync", 3), ("async", 3)])
def test_the_history_is_the_same_for_every_backend_and_number_of_workers(reference: tuple[list[Episode], Reinforce], backend: str, workers: int) -> None:
    """With `max_staleness: 0` the parallel run equals the synchronous one exactly: its episodes and the weights learnt from them."""
    played, agent = play(backend, workers, max_staleness=0)
    assert content(played) == content(reference[0])
    torch.testing.assert_close(agent.state_dict(), reference[1].state_dict(), rtol=0, atol=0, equal_nan=True)  # its buffers start as NaN
    assert {e.worker for e in played if not e.info.get("cached")} <= set(range(workers))
    assert {e.worker for e in played if not e.info.get("cached")} == set(range(workers))  # each worker took some

@pytest.mark.slow
def test_the_history_is_the_same_on_ray(local_ray: None, reference: tuple[list[Episode], Reinforce]) -> None:
    played, _ = play("ray", 3)
    assert content(played) == content(reference[0])
    assert {e.worker for e in played if not e.info.get("cached")} <= {0, 1, 2}


class RecordingPool(LocalPool):
    """The in-process pool, noting the order jobs are handed to it."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__([env], [None])
        self.submitted: list[int] = []

    def submit(self, job: Job) -> None:
        self.submitted.append(job.episode.index)
        super().submit(job)


def test_an_update_s_costliest_evaluations_go_first_and_its_episodes_come_back_in_index_order(reference: tuple[list[Episode], Reinforce]) -> None:
    env = gym.make(COSTLY)
    pool = RecordingPool(env)
    queue = EvaluationQueue(pool, env.get_wrapper_attr("decision_env"), env.get_wrapper_attr("remember"))
    pl.seed_everything(2)
    agent = Reinforce(env.observation_space, env.action_space, lr=0.5)
    sampled = queue.sample(agent, [episode_seed(11, i) for i in range(6)], version=0)
    costs = {e.index: e.info[EVALUATION_COST] for e in sampled if e.info.get(PENDING)}
    firsts = [e.index for e in sampled if e.info.get(PENDING) and e.info[EVALUATION_KEY] not in {s.info[EVALUATION_KEY] for s in sampled[: e.index]}]
    finished = []
    for index in range(6):
        while (taken := queue.take(index)) is None:
            queue.wait()
        finished.append(taken[0])
    assert pool.submitted == sorted(firsts, key=lambda i: (-costs[i], i)) != sorted(firsts)  # the costliest first; one design once
    assert content(finished) == content(reference[0][:6])  # what the sync run, whose first update this is, got


def dying(backend: str, env_kwargs: dict, per_update: int = 6) -> list[Episode]:
    data = EpisodeDataModule("fault_envs:QueuedDyingBandit-v0", env_kwargs, episodes_per_update=per_update, seed=7, num_workers=2, backend=backend)
    pl.seed_everything(0)
    agent = Reinforce(data.observation_space, data.action_space)
    try:
        return data.play_batch(agent, per_update)
    finally:
        data.teardown("fit")


@pytest.mark.slow
def test_a_worker_dying_on_the_queue_is_replaced_and_its_episode_evaluated_once(local_ray: None, tmp_path: Path) -> None:
    reference = dying("sync", {})
    for backend in ("async", "ray"):
        marker = tmp_path / backend
        played = dying(backend, {"die_on_seed": episode_seed(7, 0), "marker": str(marker)})
        assert marker.exists()  # episode 0's worker (worker 0) was killed evaluating it
        assert [(e.index, e.actions, e.rewards, e.info) for e in played] == [(e.index, e.actions, e.rewards, e.info) for e in reference]
        assert played[0].worker == 2  # its replacement, with a new id, took the episode again


@pytest.mark.slow
def test_an_async_worker_dying_twice_on_one_episode_stops_the_search_with_one_line() -> None:
    with pytest.raises(WorkerDiedError) as err:
        dying("async", {"die_on_seed": episode_seed(7, 0)})
    assert str(err.value) == (
        "worker 2 (killed by SIGKILL (the out-of-memory killer sends it)) died evaluating episode 0 again "
        "(worker 0 (killed by SIGKILL (the out-of-memory killer sends it)) died on it first); "
        "the search stopped (resume it with --ckpt_path last)"
    )


@pytest.mark.slow
def test_a_ray_worker_dying_twice_on_one_episode_penalises_it_and_the_search_goes_on(local_ray: None) -> None:
    played = dying("ray", {"die_on_seed": episode_seed(7, 0)})
    assert played[0].info["error_kind"] == "WorkerDied" and played[0].rewards[-1] == 0.0  # the env's failure reward (it sets none: 0)
    assert played[0].worker == 3  # workers 0 and 2 died on it
    reference = dying("sync", {})
    assert [(e.actions, e.info) for e in played[1:]] == [(e.actions, e.info) for e in reference[1:]]


def test_stale_updates_learn_from_episodes_one_update_old_with_truncated_importance_weights() -> None:
    """2 `sync` workers take the jobs in turn: at an update's last job one is free, so the next update is sampled then."""
    data = EpisodeDataModule(COSTLY, episodes_per_update=5, seed=11, num_workers=2, backend="sync", max_staleness=1, importance_clip=1.05)
    pl.seed_everything(2)
    agent = Reinforce(data.observation_space, data.action_space, lr=0.5)
    optimizer = agent.configure_optimizers()
    staleness, weights, previous = [], [], None
    for _ in range(4):
        sampling = copy.deepcopy(agent)  # the weights the next update's episodes are sampled with, ahead
        batch = data.play_batch(agent, 5)
        staleness += [e.staleness for e in batch]
        if previous is not None:  # sampled during the previous update's play, by its weights
            assert [e.log_likelihood for e in batch] == pytest.approx(previous.log_likelihoods(batch))
        for episode, now in zip(batch, agent.log_likelihoods(batch)):
            assert episode.weight == (1.0 if episode.staleness == 0 else min(math.exp(now - episode.log_likelihood), 1.05))
        weights += [e.weight for e in batch]
        learn(agent, optimizer, batch)
        previous = sampling
    data.teardown("fit")
    assert staleness == [0] * 5 + [1] * 15
    assert any(w < 1.0 for w in weights[5:]) and any(w == 1.05 for w in weights[5:])
    assert {e.record["staleness"] for e in batch} == {1}


def test_an_in_process_evaluator_never_idles_so_nothing_goes_stale() -> None:
    played, _ = play("sync", 1, max_staleness=2)
    assert {e.staleness for e in played} == {0}


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"max_staleness": -1}, "data.max_staleness"),
        ({"max_staleness": 1, "env_id": "CartPole-v1"}, "data.max_staleness"),  # stepped: nothing is sampled ahead
        ({"importance_clip": 0.0}, "data.importance_clip"),
    ],
)
def test_bad_staleness_settings_name_their_key(settings: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        EpisodeDataModule(**{"env_id": COSTLY, **settings})
    assert err.value.key == key


def test_stale_updates_refuse_distinct_designs_before_any_episode(tmp_path: Path) -> None:
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(write_table(tmp_path / "nb201.csv"))}, max_staleness=1)
    model = Reinforce(data.observation_space, data.action_space, distinct_designs=True)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ConfigError) as err:
        trainer.fit(model, datamodule=data)
    assert err.value.key == "data.max_staleness" and data.episodes_played == 0


@pytest.mark.slow
def test_a_nasprune_decision_copy_leaves_the_evaluation_to_a_replay_and_answers_known_designs(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    decisions = env.get_wrapper_attr("decision_env")()
    space = SearchSpace.from_config(tiny_env_kwargs["search_space"])
    actions = [0, 1, 1, 1, 0, 0]  # conv3x3 width 8 ratio 0.5, then sepconv3x3 width 4 ratio 0
    stepped = []
    env.reset(seed=3)
    for action in actions:
        stepped.append(env.step(action))
    env.get_wrapper_attr("cache").entries.clear()  # forget it: the replay must train it again
    reward, info = evaluate(decisions, 3, actions)
    key = space.design_from_actions(actions).to_json()
    assert info.pop(EVALUATION_COST) > 0  # its value is the env's own test
    assert (reward, info) == (0.0, {PENDING: True, EVALUATION_KEY: key})
    replayed = evaluate(env, 3, actions)
    final = stepped[-1]
    assert replayed[0] == final[1] and {k: v for k, v in replayed[1].items() if not k.startswith("seconds")} == {
        k: v for k, v in final[4].items() if not k.startswith("seconds")}  # fmt: skip
    assert replayed[1]["accuracy"] > 0
    cached_reward, cached = evaluate(decisions, 3, actions)  # the copy shares the env's cache
    assert cached_reward == final[1] and cached["cached"] is True and PENDING not in cached


def test_a_nasbench201_decision_copy_passes_the_env_checker(tmp_path: Path) -> None:
    env = gym.make("nasprune/NasBench201-v0", table=str(write_table(tmp_path / "nb201.csv")))
    decisions = env.get_wrapper_attr("decision_env")()
    check_env(decisions, skip_render_check=True)
    _, info = evaluate(decisions, 0, [1, 2, 3, 1, 2, 3])
    assert info == {PENDING: True}
    assert evaluate(env, 0, [1, 2, 3, 1, 2, 3])[1]["arch"] == "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
