"""Local search, the Optuna strategies (TPE, GP, NSGA-II), the controller's distinct designs:
optimum found, masks respected, runs reproducible and resumable, bad settings refused."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import toy_envs  # noqa: F401  (registers ChainMask-v0)
from nasprune.records import read_history
from nasprune.cli import main
from nasprune.config import ConfigError
from nasprune.controller import Episode, EpisodeDataModule, LocalSearch, OptunaSearch, RandomSearch, RegularizedEvolution, Reinforce
from nasprune.controller.design_tree import DesignTree
from nasprune.envs.nasbench201_env import actions_to_arch
from test_nasbench201 import BEST, write_table
from test_resume import kill_at_random_moment, resume, run_dir, tabular_args, without_timing

SAMPLERS = ["optuna.samplers.TPESampler", "optuna.samplers.GPSampler", "optuna.samplers.NSGAIISampler"]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "nb201.csv")


def search(data: EpisodeDataModule, strategy: object, episodes: int, per_update: int = 1) -> list[Episode]:
    """Play and learn `episodes` episodes in batches, as a gradient-free strategy's training steps do."""
    played: list[Episode] = []
    while len(played) < episodes:
        batch = data.play_batch(strategy, per_update)
        strategy.learn(batch)
        played += batch
    return played


def gradient_free(name: str, data: EpisodeDataModule, seed: int) -> object:
    spaces_ = (data.observation_space, data.action_space)
    if name == "local_search":
        return LocalSearch(*spaces_, seed=seed)
    if name == "evolution":
        return RegularizedEvolution(*spaces_, seed=seed)
    if name == "random":
        return RandomSearch(*spaces_, seed=seed)
    return OptunaSearch(*spaces_, sampler={"class_path": name}, seed=seed)


def test_design_tree_knows_which_prefixes_are_exhausted() -> None:
    tree = DesignTree()
    tree.add((0, 1), 0.5, [(0, 1), (1, 2)])  # after (), the env allowed 0 and 1; after (0,), 1 and 2
    assert (0, 1) in tree and (0, 2) not in tree and tree.closed == {(0,): {1}}  # (0,) is not exhausted yet
    assert tree.unexplored((0,), np.array([0, 1, 1])).tolist() == [0, 0, 1]
    tree.add((0, 2), 0.7, [(0, 1), (1, 2)])
    assert tree.closed[()] == {0}  # both continuations of (0,) are known, none of (1,)
    assert tree.unexplored((), np.array([1, 1, 0])).tolist() == [0, 1, 0]
    tree.add((1, 1), 0.1, [(0, 1), (1,)])  # after (1,) only action 1 is allowed
    assert tree.closed[()] == {0, 1} and tree.unexplored((), np.array([1, 1, 0])).tolist() == [1, 1, 0]  # all known: no restriction
    again = DesignTree()
    again.load_state_dict(json.loads(json.dumps(tree.state_dict())))
    assert again.closed == tree.closed and again.rewards == {(0, 1): 0.5, (0, 2): 0.7, (1, 1): 0.1}


def test_local_search_moves_to_the_first_better_neighbour_and_never_pays_twice(table: Path) -> None:
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, seed=0)
    strategy = LocalSearch(data.observation_space, data.action_space, initial_designs=3, seed=1)
    played = search(data, strategy, 60)
    designs = [tuple(ep.actions) for ep in played]
    assert len(set(designs)) == len(designs)  # neighbours already evaluated are cache hits, not episodes
    start = max(played[:3], key=lambda ep: ep.total_reward)
    # after the random starts, every episode is a neighbour (one edge changed) of the design current
    # then, except for a restart from a random design at a local optimum (on this separable table
    # only BEST is one), once its 12 neighbours are known
    current, reward, restarts = tuple(start.actions), start.total_reward, 0
    for i, episode in enumerate(played[3:], start=3):
        design = tuple(episode.actions)
        moves = [d for d in designs[:i] if sum(a != b for a, b in zip(d, current)) == 1 and strategy.known.rewards[d] > reward]
        while moves:  # a known better neighbour is moved to without an episode
            current = moves[0]  # (the first in the strategy's random order; here the only one)
            reward = strategy.known.rewards[current]
            moves = [d for d in designs[:i] if sum(a != b for a, b in zip(d, current)) == 1 and strategy.known.rewards[d] > reward]
        if sum(a != b for a, b in zip(design, current)) == 1:
            if episode.total_reward > reward:
                current, reward = design, episode.total_reward
            continue
        assert current == BEST and len([d for d in designs[:i] if sum(a != b for a, b in zip(d, BEST)) == 1]) == 12
        current, reward, restarts = design, episode.total_reward, restarts + 1
    assert strategy.current == current and restarts >= 1


# Measured over seeds 0–9 on the 729-row synthetic table (unique optimum BEST): budget → seeds of 10
# whose best design within it is BEST. The runs are seeded (deterministic); the test allows one seed
# less than measured. Random search, for scale, finds it in 5 of 10 within 300 episodes. (GPSampler,
# at about 0.1 s a trial, is left to the mask and seed tests.)
OPTIMUM_WITHIN = {
    "local_search": (50, 10),  # measured 10 of 10 within 50 (and within 100)
    "optuna.samplers.TPESampler": (100, 10),  # measured 10 of 10 within 100
    "optuna.samplers.NSGAIISampler": (200, 9),  # measured 9 of 10 within 200, 10 of 10 within 300
    "evolution": (200, 10),  # measured 10 of 10 within 200 (P = 30, S = 10)
}


@pytest.mark.parametrize("name", list(OPTIMUM_WITHIN))
def test_each_strategy_finds_the_unique_optimum_of_a_small_table(table: Path, name: str) -> None:
    budget, seeds_needed = OPTIMUM_WITHIN[name]
    found = 0
    for seed in range(10):
        data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, seed=seed)
        played = search(data, gradient_free(name, data, seed), budget)
        found += max(played, key=lambda ep: ep.total_reward).actions == list(BEST)
    assert found >= seeds_needed - 1


def controller_search(table: Path, seed: int, updates: int, **options: object) -> list[Episode]:
    """The controller at `configs/nasbench201.yaml`'s settings (16 episodes per update) plus `options`."""
    pl.seed_everything(seed, verbose=False)
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, episodes_per_update=16, num_envs=16)
    played: list[Episode] = []

    class Record(pl.Callback):
        def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
            played.append(episode)

    model = Reinforce(data.observation_space, data.action_space, lr=0.015, entropy_weight=0.01, rank_advantages=True, distinct_designs=True, **options)
    trainer = pl.Trainer(max_steps=updates, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(model, datamodule=data)
    return played


# Measured over seeds 0–9 on the same table: the episode at which BEST was first played. Without
# the options: 82 81 64 13 113 68 52 81 64 53; risk-seeking (ε 0.1, window 128): 42 65 50 13 66
# 64 48 117 66 82; two PPO epochs per update: 26 88 66 13 80 68 41 39 49 52. So 10 of 10 within
# 8 updates (128 episodes) each; the test allows one seed less.
CONTROLLER_OPTIONS = {"risk_seeking": {"risk_seeking": 0.1, "risk_window": 128}, "ppo": {"update_epochs": 2}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONTROLLER_OPTIONS))
def test_the_controller_options_find_the_unique_optimum_of_a_small_table(table: Path, name: str) -> None:
    found = sum(list(BEST) in [ep.actions for ep in controller_search(table, seed, 8, **CONTROLLER_OPTIONS[name])] for seed in range(10))
    assert found >= 9


@pytest.mark.parametrize("name", list(CONTROLLER_OPTIONS))
def test_the_controller_options_give_the_same_search_for_the_same_seed(table: Path, name: str) -> None:
    runs = [[ep.actions for ep in controller_search(table, seed, 4, **CONTROLLER_OPTIONS[name])] for seed in (5, 5, 6)]
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize("name", ["local_search", "evolution", "random", *SAMPLERS])
def test_no_strategy_takes_a_masked_action_where_masks_vary(name: str) -> None:
    data = EpisodeDataModule("toy_envs:ChainMask-v0", seed=0)
    episodes = 20 if "GP" in name else 80
    played = search(data, gradient_free(name, data, seed=0), episodes, per_update=4)
    for episode in played:
        assert "error" not in episode.info
        for observation, action in zip(episode.observations, episode.actions):
            assert observation["action_mask"][action] == 1


def test_the_controller_takes_no_masked_action_and_no_repeat_with_distinct_designs() -> None:
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:ChainMask-v0", episodes_per_update=8, num_envs=8)
    played: list[Episode] = []

    class Record(pl.Callback):
        def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
            played.append(episode)

    model = Reinforce(data.observation_space, data.action_space, lr=0.05, distinct_designs=True, rank_advantages=True)
    trainer = pl.Trainer(max_steps=15, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    trainer.fit(model, datamodule=data)
    designs = [tuple(ep.actions) for ep in played]
    assert all("error" not in ep.info for ep in played)
    assert len(played) == 120 and len(model.designs) == len(set(designs))
    for update in range(15):
        batch = designs[8 * update : 8 * (update + 1)]
        assert not set(designs[: 8 * update]) & set(batch)  # never a design evaluated by an earlier update
        for k, design in enumerate(batch):
            if design in batch[:k]:  # within an update, only once every allowed last decision is taken
                last = played[8 * update + k].observations[-1]["action_mask"]
                assert all(design[:-1] + (a,) in designs[: 8 * update + k] for a in np.flatnonzero(last))


def test_restart_patience_redraws_a_stalled_policy_and_keeps_its_designs(tmp_path: Path) -> None:
    # every design scores the same: the first update reaches the best return and none beats it
    rows = [[i, actions_to_arch(d), 50.0, 53.0, 58.0, 1.0, 3.0] for i, d in enumerate(itertools.product((1, 2, 3), repeat=6))]
    flat = write_table(tmp_path / "flat.csv", rows=rows)
    pl.seed_everything(0)
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(flat)}, episodes_per_update=8, num_envs=8)
    model = Reinforce(data.observation_space, data.action_space, lr=0.03, rank_advantages=True, distinct_designs=True, restart_patience=16)
    played: list[Episode] = []
    moves: list[float] = []  # per update, the largest change of a policy weight

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            self.before = [p.detach().clone() for p in model.policy.parameters()]

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            moves.append(max((p.detach() - b).abs().max().item() for p, b in zip(model.policy.parameters(), self.before)))

        def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
            played.append(episode)

    trainer = pl.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Watch()])
    trainer.fit(model, datamodule=data)
    # 16 episodes without a better return after updates 3, 5, 7 and 9 (1-based): the next one starts afresh
    assert int(model.restarts) == 4 and int(model.since_best) == 8
    redrawn = [update for update, move in enumerate(moves) if move > 0.3]
    assert redrawn == [3, 5, 7, 9]
    assert max(move for update, move in enumerate(moves) if update not in redrawn) < 0.1  # an Adam step moves a weight by about lr
    assert len({tuple(ep.actions) for ep in played}) == 80  # the evaluated designs stay known: none is sampled twice


def test_restart_flatten_scales_the_logits_and_keeps_the_rest_of_the_policy(tmp_path: Path) -> None:
    rows = [[i, actions_to_arch(d), 50.0, 53.0, 58.0, 1.0, 3.0] for i, d in enumerate(itertools.product((1, 2, 3), repeat=6))]
    flat = write_table(tmp_path / "flat.csv", rows=rows)
    pl.seed_everything(0)
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(flat)}, episodes_per_update=8, num_envs=8)
    model = Reinforce(data.observation_space, data.action_space, lr=0.03, rank_advantages=True, distinct_designs=True, restart_patience=16, restart_flatten=0.25)
    before: dict[int, dict[str, torch.Tensor]] = {}
    after: dict[int, dict[str, torch.Tensor]] = {}

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: object, batch_idx: int) -> None:
            before[trainer.global_step] = {k: v.clone() for k, v in model.policy.state_dict().items()}

        def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
            after[trainer.global_step - 1] = {k: v.clone() for k, v in model.policy.state_dict().items()}

    trainer = pl.Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Watch()])
    trainer.fit(model, datamodule=data)
    assert int(model.restarts) == 2  # at the start of updates 4 and 6 (1-based), as with fresh weights
    step = 0.031  # Adam moves a weight by about lr (0.03) in a step
    for update in range(6):
        scale = 0.25 if update in (3, 5) else 1.0
        for name, value in before[update].items():
            expected = value * scale if name.startswith("head.") else value
            assert (after[update][name] - expected).abs().max() <= step, (update, name)


def test_distinct_designs_needs_an_action_mask() -> None:
    data = EpisodeDataModule("toy_envs:TargetSequence-v0")
    with pytest.raises(ConfigError, match="model.init_args.distinct_designs"):
        Reinforce(data.observation_space, data.action_space, distinct_designs=True)


@pytest.mark.parametrize("name", ["local_search", *SAMPLERS])
def test_the_same_seed_gives_the_same_search(table: Path, name: str) -> None:
    runs = []
    for seed in (5, 5, 6):
        data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, seed=seed)
        runs.append([ep.actions for ep in search(data, gradient_free(name, data, seed), 15 if "GP" in name else 40, per_update=2)])
    assert runs[0] == runs[1] != runs[2]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.sampler={class_path: optuna.samplers.NoSuchSampler}"],
         "model.init_args.sampler.class_path: module 'optuna.samplers' has no attribute 'NoSuchSampler'"),
        (["--model.sampler={class_path: nosuchmodule.Sampler}"], "model.init_args.sampler.class_path: cannot import module 'nosuchmodule'"),
        (["--model.sampler={class_path: optuna.Study}"], "model.init_args.sampler.class_path: <class 'optuna.study.study.Study'> is not a subclass of BaseSampler"),
        (["--model.sampler={class_path: optuna.samplers.TPESampler, init_args: {no_such_arg: 1}}"],
         "model.init_args.sampler.init_args: unknown arguments ['no_such_arg'] for TPESampler"),
        (["--model.sampler={class_path: optuna.samplers.NSGAIISampler, init_args: {population_size: 1}}"],
         "model.init_args.sampler.init_args: optuna.samplers.NSGAIISampler rejected {\"population_size\": 1}: `population_size` must be greater than or equal to 2."),
        (["--model.directions=[maximize, minimize]"], "model.init_args.directions: needs one direction per objective (1), got 2"),
    ],
)
def test_bad_sampler_settings_fail_before_any_search_in_one_line(
    repo: Path, table: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit):
        main(tabular_args(repo, table, tmp_path / "runs", "--model=nasprune.controller.OptunaSearch", *extra))
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nasprune: error: {message}") and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_nsga2_reports_the_pareto_front_of_two_objectives(repo: Path, table: Path, tmp_path: Path) -> None:
    extra = ["--model=nasprune.controller.OptunaSearch", "--model.sampler={class_path: optuna.samplers.NSGAIISampler, init_args: {population_size: 8}}",
             "--model.objectives=[valid_acc_12ep, latency_ms_pixel3]", "--trainer.max_steps=6", "--data.episodes_per_update=8"]
    main(tabular_args(repo, table, tmp_path, *extra))
    history = read_history(run_dir(tmp_path) / "history.jsonl")
    points = {(h["valid_acc_12ep"], h["latency_ms_pixel3"]) for h in history}
    pareto = {p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)}
    front = json.loads((run_dir(tmp_path) / "pareto_front.json").read_text())
    assert {(p["valid_acc_12ep"], p["latency_ms_pixel3"]) for p in front} == pareto
    assert all(history[p["episode"]]["valid_acc_12ep"] == p["valid_acc_12ep"] for p in front)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["nasprune.controller.OptunaSearch", "nasprune.controller.LocalSearch"])
def test_a_killed_search_resumes_to_the_same_history_and_study(repo: Path, tmp_path: Path, strategy: str) -> None:
    import random

    import optuna

    table = write_table(tmp_path / "nb201.csv")
    budget = [f"--model={strategy}", "--trainer.max_steps=30", "--data.episodes_per_update=4", "--data.num_envs=4", "--history.fsync_interval=0",
              "--checkpoint.every_n_train_steps=3"]
    killed = tmp_path / "killed"
    args = tabular_args(repo, table, killed, *budget)
    directory = killed / "lightning_logs" / "version_0"
    kill_at_random_moment(args, directory / "history.jsonl", directory / "checkpoints" / "last.ckpt", 120, random.Random(7))
    resume(args)
    main(tabular_args(repo, table, tmp_path / "whole", *budget))
    history, whole = read_history(directory / "history.jsonl"), read_history(run_dir(tmp_path / "whole") / "history.jsonl")
    assert [h["episode"] for h in history] == list(range(120))
    assert without_timing(history) == without_timing(whole)
    if "Optuna" in strategy:  # the study file holds each episode once, as its trial
        study = optuna.load_study(study_name="nasprune", storage=f"sqlite:///{directory / 'optuna.db'}")
        assert [t.user_attrs["actions"] for t in study.trials] == [h["actions"] for h in history]
        assert [t.value for t in study.trials] == [h["reward"] for h in history]


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [
        ["--model=nasprune.controller.LocalSearch", "--model.initial_designs=2"],
        ["--model=nasprune.controller.OptunaSearch", "--model.sampler={class_path: optuna.samplers.NSGAIISampler, init_args: {population_size: 2}}",
         "--model.objectives=[accuracy, flops]"],
    ],
)
def test_the_strategies_run_on_the_real_nasprune_env(repo: Path, tmp_path: Path, tiny_env_kwargs: dict, extra: list[str]) -> None:
    import yaml

    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "-c", str(path), f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=4", "--data.episodes_per_update=1",
          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra])
    history = read_history(run_dir(tmp_path) / "history.jsonl")
    assert len(history) == 4 and all("error" not in h for h in history)
    assert all(h["accuracy"] > 0 and h["flops"] > 0 for h in history)
    if "OptunaSearch" in extra[0]:
        front = json.loads((run_dir(tmp_path) / "pareto_front.json").read_text())
        points = [(h["accuracy"], h["flops"]) for h in history]
        assert {(p["accuracy"], p["flops"]) for p in front} == {
            p for p in points if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)
        }
