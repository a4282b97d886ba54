"""The evaluation cache: a design is trained once per run; hits are marked and still count."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nasprune.envs  # noqa: F401  (registers nasprune/NasPrune-v0)
from nasprune.records import read_history
from nasprune.cli import run

POOL_THEN_CONV = [2, 0, 0, 0, 1, 1]  # maxpool3x3 | conv3x3:8@0.5 in the tiny space


def play(env: gym.Env, actions: list[int], seed: int) -> dict:
    env.reset(seed=seed)
    for action in actions:
        *_, terminated, _, info = env.step(action)
    assert terminated
    return info


def test_a_design_is_trained_once_and_then_answered_from_the_cache(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    first = play(env, POOL_THEN_CONV, seed=0)
    again = play(env, POOL_THEN_CONV, seed=1)  # another child seed: trained again it would score differently
    assert "cached" not in first and again["cached"] is True
    assert "seconds/train" in first and "seconds/train" not in again
    for key in ("reward", "accuracy", "flops", "params", "design", "reward/cost_term"):
        assert again[key] == first[key], key
    assert env.unwrapped.cache.hits == 1 and len(env.unwrapped.cache) == 1
    uncached = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs, cache=False)
    assert "cached" not in play(uncached, POOL_THEN_CONV, seed=0) and "cached" not in play(uncached, POOL_THEN_CONV, seed=1)
    assert uncached.unwrapped.cache is None


def test_equivalent_encodings_share_an_entry_and_records_from_elsewhere_seed_it(tiny_env_kwargs: dict) -> None:
    """A history line that spells the pooling layer's ignored width and ratio still matches."""
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    elsewhere = {
        "design": {"layers": [{"op": "maxpool3x3", "width": 8, "prune_ratio": 0.5}, {"op": "conv3x3", "width": 8, "prune_ratio": 0.5}]},
        "design_str": "maxpool3x3 | conv3x3:8@0.5", "reward": 0.25, "accuracy": 0.5, "flops": 10, "params": 3,
        "episode": 7, "update": 1, "actions": POOL_THEN_CONV, "seconds": 4.0, "seconds/train": 3.0,
    }  # fmt: skip
    transient = {**elsewhere, "design": {"layers": [{"op": "identity"}, {"op": "identity"}]}, "error_kind": "out_of_memory"}
    assert env.unwrapped.remember([elsewhere, transient, {"reward": 1.0}]) == 1  # failures that may pass next time are not kept
    info = play(env, POOL_THEN_CONV, seed=0)
    assert info["cached"] is True and (info["reward"], info["accuracy"], info["flops"]) == (0.25, 0.5, 10)
    assert not {"episode", "update", "actions", "seconds", "seconds/train"} & set(info)


@pytest.fixture
def two_design_config(repo: Path, tmp_path: Path) -> Path:
    """A space of exactly two designs (one layer, pooling or identity): a search must repeat them."""
    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"]["search_space"] = {"num_layers": 1, "ops": ["maxpool3x3", "identity"], "widths": [4], "prune_ratios": [0.0], "stem_width": 4}
    config["data"]["env_kwargs"]["training"] = {"epochs": 1, "finetune_epochs": 0}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def search(config: Path, root: Path, *extra: str) -> tuple[list[dict], Path]:
    run(["fit", "-c", str(config), "--trainer.max_steps=3", "--data.episodes_per_update=3", f"--trainer.default_root_dir={root}",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra])  # fmt: skip
    (run_dir,) = (root / "lightning_logs").iterdir()
    return read_history(run_dir / "history.jsonl"), run_dir


def test_a_search_trains_each_design_once_and_counts_every_episode(two_design_config: Path, tmp_path: Path) -> None:
    history, run_dir = search(two_design_config, tmp_path / "cached")
    assert [h["episode"] for h in history] == list(range(9))
    trained = [h for h in history if not h.get("cached")]
    assert len(trained) == len({h["design_str"] for h in history}) <= 2
    first = {h["design_str"]: h for h in trained}
    for record in history:
        assert record["reward"] == first[record["design_str"]]["reward"]
        assert record["episode"] >= first[record["design_str"]]["episode"]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("search/episodes")] == [3.0, 6.0, 9.0]  # hits are episodes of the budget
    assert [e.step for e in events.Scalars("episode/reward")] == list(range(9))

    uncached, _ = search(two_design_config, tmp_path / "uncached", "--data.env_kwargs.cache=false")
    assert not any(h.get("cached") for h in uncached) and all("seconds/train" in h for h in uncached)
