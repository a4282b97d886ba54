"""Random search, ageing evolution and batched acting, on a synthetic NAS-Bench-201 table."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl

import toy_envs  # noqa: F401  (registers TargetSequence-v0)
from nasprune.cli import run
from nasprune.config import ConfigError
from nasprune.controller import Episode, EpisodeDataModule, RandomSearch, RegularizedEvolution, Reinforce
from nasprune.controller.baselines import Mutation
from test_nasbench201 import write_table


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "nb201.csv")


def data_module(table: Path, episodes_per_update: int = 4, num_envs: int = 1, seed: int = 0) -> EpisodeDataModule:
    return EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, episodes_per_update, seed=seed, num_envs=num_envs)


def cli_run(repo: Path, table: Path, root: Path, *extra: str) -> list[dict]:
    run(
        [
            "fit",
            "-c",
            str(repo / "configs" / "nasbench201.yaml"),
            f"--data.env_kwargs.table={table}",
            f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            *extra,
        ]
    )
    (run_dir,) = root.glob("lightning_logs/version_*")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert json.loads((run_dir / "best.json").read_text()) == max(history, key=lambda h: h["reward"])
    return history


def test_random_search_is_uniform_over_the_allowed_actions(table: Path) -> None:
    data = data_module(table)
    strategy = RandomSearch(data.observation_space, data.action_space, seed=3)
    episodes = [data.play(strategy) for _ in range(600)]
    counts = Counter(a for ep in episodes for a in ep.actions)
    assert set(counts) == {1, 2, 3}  # the table holds only these three ops: the mask allows nothing else
    assert all(abs(n / (600 * 6) - 1 / 3) < 0.03 for n in counts.values())
    again = RandomSearch(data.observation_space, data.action_space, seed=3)
    assert [data.play(again).actions for _ in range(5)] != [ep.actions for ep in episodes[-5:]]
    replay = RandomSearch(data.observation_space, data.action_space, seed=3)
    assert [data.play(replay).actions for _ in range(5)] == [ep.actions for ep in episodes[:5]]


def test_the_tournament_copies_the_best_sampled_member_and_mutates_one_decision(table: Path) -> None:
    data = data_module(table)
    evolution = RegularizedEvolution(data.observation_space, data.action_space, population_size=6, sample_size=3, seed=7)
    assert evolution.initial_state() == Mutation()  # population not full: random
    members = [((1, 1, 1, 1, 1, 1), 50.0), ((2, 2, 2, 2, 2, 2), 60.0), ((3, 3, 3, 3, 3, 3), 70.0),
               ((1, 2, 3, 1, 2, 3), 55.0), ((3, 2, 1, 3, 2, 1), 65.0), ((2, 3, 1, 2, 3, 1), 45.0)]  # fmt: skip
    evolution.population.extend(members)
    expected = np.random.default_rng(7)
    for _ in range(20):
        sampled = expected.choice(6, size=3, replace=False)
        parent = max((members[i] for i in sampled), key=lambda m: m[1])[0]
        position = int(expected.integers(6))
        state = evolution.initial_state()
        assert state == Mutation(parent, position)
        obs, _ = data.env.reset()
        actions = []
        for _ in range(6):
            action, state = evolution.act(obs, state)
            if len(actions) == position:  # the mutation: another op the mask allows
                assert action == expected.choice(np.array([op for op in (1, 2, 3) if op != parent[position]]))
            actions.append(action)
            obs, *_ = data.env.step(action)
        changed = [t for t in range(6) if actions[t] != parent[t]]
        assert changed == [position] and actions[position] in {1, 2, 3}


def test_ageing_drops_the_oldest_and_keeps_the_newest(table: Path) -> None:
    pl.seed_everything(0)
    data = data_module(table, episodes_per_update=5)
    evolution = RegularizedEvolution(data.observation_space, data.action_space, population_size=8, sample_size=3)
    played: list[Episode] = []
    for _ in range(6):
        batch = data.play_batch(evolution, 5)
        evolution.learn(batch)
        played += batch
    assert len(evolution.population) == 8
    assert list(evolution.population) == [(tuple(ep.actions), ep.total_reward) for ep in played[-8:]]
    # after the first 8 (random) members, each child is one mutation away from a member alive at its birth
    for i, child in enumerate(played[10:], start=10):
        alive = [tuple(ep.actions) for ep in played[max(0, i - i % 5 - 8) : i - i % 5]]
        assert 1 in {sum(a != b for a, b in zip(child.actions, parent)) for parent in alive}


def test_a_sample_larger_than_the_population_names_the_key(table: Path) -> None:
    """(A population of 0 is refused by the CLI's typing: `test_faults`.)"""
    data = data_module(table)
    with pytest.raises(ConfigError, match="model.init_args.sample_size"):
        RegularizedEvolution(data.observation_space, data.action_space, population_size=5, sample_size=6)


def test_baselines_run_through_the_cli_by_one_flag(repo: Path, table: Path, tmp_path: Path) -> None:
    flag = "--model=nasprune.controller.RegularizedEvolution"
    batch = ("--data.episodes_per_update=12", "--data.num_envs=12")
    args = (flag, "--model.population_size=20", "--model.sample_size=5", "--trainer.max_steps=10", "--seed_everything=1", *batch)
    history = cli_run(repo, table, tmp_path / "a", *args)
    assert len(history) == 120 and [h["update"] for h in history[::12]] == list(range(10))
    again = cli_run(repo, table, tmp_path / "c", *args)
    assert [h["actions"] for h in again] == [h["actions"] for h in history]
    # evolution improves on its random start; random search over the same budget stays flat
    rewards = np.array([h["reward"] for h in history])
    assert rewards[-24:].mean() > rewards[:24].mean() + 5
    random = cli_run(repo, table, tmp_path / "d", "--model=nasprune.controller.RandomSearch", "--trainer.max_steps=10", *batch)
    assert len(random) == 120 and {a for h in random for a in h["actions"]} == {1, 2, 3}


def test_batched_play_matches_the_episode_interface() -> None:
    """`num_envs` copies played side by side: indices, seeds and early ends as in one-by-one play."""
    pl.seed_everything(0)
    kwargs = {"target": (0, 2, 1), "masked": True, "n_actions": 3}
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", kwargs, episodes_per_update=6, seed=5, num_envs=4)
    assert len(data.envs) == 4
    for strategy in (RandomSearch(data.observation_space, data.action_space, seed=0), Reinforce(data.observation_space, data.action_space)):
        episodes = data.play_batch(strategy, 6)
        assert [ep.index for ep in episodes] == list(range(data.episodes_played - 6, data.episodes_played))
        for ep in episodes:
            assert len(ep.actions) == len(ep.rewards) == len(ep.observations) == 3
            assert 0 not in ep.actions and ep.total_reward == pytest.approx(sum(a == t for a, t in zip(ep.actions, (0, 2, 1))) / 3)
    # an action outside the mask ends an episode early; the others in its batch play on
    unmasked = EpisodeDataModule("toy_envs:TargetSequence-v0", {"target": (1, 1, 1), "masked": True}, 8, seed=0, num_envs=8)
    always_zero = RandomSearch(unmasked.observation_space, unmasked.action_space, seed=0)
    always_zero.allowed_actions = lambda observation: np.array([0]) if observation["step"] == 1 else np.array([1, 2])  # type: ignore[method-assign]
    for ep in unmasked.play_batch(always_zero, 8):
        assert len(ep.actions) == 2 and ep.actions[1] == 0 and ep.rewards[-1] == -1.0


def test_batched_acting_samples_like_single_acting(table: Path) -> None:
    pl.seed_everything(0)
    data = data_module(table)
    controller = Reinforce(data.observation_space, data.action_space)
    obs, _ = data.env.reset(seed=0)
    controller.sampler.manual_seed(1)  # actions come from the controller's own generator
    single, _ = controller.act(obs, controller.initial_state())
    controller.sampler.manual_seed(1)
    batched, states = controller.act_batch([obs], controller.initial_states(1))
    assert batched == [single] and states[0][0].shape == (1, controller.hparams.hidden_size)
    first = data_module(table, 8, num_envs=8)
    second = data_module(table, 8, num_envs=8)
    pl.seed_everything(3)
    a = [ep.actions for ep in first.play_batch(Reinforce(first.observation_space, first.action_space), 8)]
    pl.seed_everything(3)
    b = [ep.actions for ep in second.play_batch(Reinforce(second.observation_space, second.action_space), 8)]
    assert a == b and len({tuple(x) for x in a}) > 1
