from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import nasprune.envs  # noqa: F401  (registers nasprune/NasPrune-v0)
from nasprune.config import ConfigError


@pytest.mark.parametrize("prune_switch", [False, True])
def test_check_env_passes(tiny_env_kwargs: dict, prune_switch: bool) -> None:
    tiny_env_kwargs["search_space"]["prune_switch"] = prune_switch
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    assert env.observation_space["step"].n == 2 * 3 + prune_switch + 1
    check_env(env.unwrapped, skip_render_check=True)


def test_spaces_and_masks(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    assert env.action_space == gym.spaces.Discrete(4)  # four ops is the largest choice list
    obs, _ = env.reset(seed=0)
    assert obs["step"] == 0 and obs["prev_action"] == 4
    assert obs["action_mask"].tolist() == [1, 1, 1, 1]
    obs, *_ = env.step(0)  # conv3x3 → its width has two choices
    assert obs["action_mask"].tolist() == [1, 1, 0, 0] and obs["prev_action"] == 0
    obs, *_ = env.step(1)
    obs, *_ = env.step(1)
    obs, *_ = env.step(2)  # maxpool3x3 → width and ratio cannot matter
    assert obs["action_mask"].tolist() == [1, 0, 0, 0]


def test_final_step_scores_the_pruned_child(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    env.reset(seed=0)
    rewards = []
    for action in [0, 1, 1, 1, 0, 0]:  # conv3x3:8@0.5 | sepconv3x3:4@0
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
    assert terminated and not truncated
    assert rewards[:-1] == [0.0] * 5
    assert info["design_str"] == "conv3x3:8@0.5 | sepconv3x3:4@0"
    assert info["flops"] < info["flops_unpruned"] and info["params"] < info["params_unpruned"]
    assert 0.0 <= info["accuracy"] <= 1.0
    expected = 1.0 * info["accuracy"] - 0.5 * info["flops"] / info["reward/cost_ref"]
    assert rewards[-1] == pytest.approx(expected) == pytest.approx(info["reward"])
    assert info["reward/accuracy_term"] - info["reward/cost_term"] == pytest.approx(info["reward"])
    for key in ("seconds/train", "seconds/prune", "seconds/finetune", "seconds/score"):
        assert info[key] >= 0


def test_a_decision_copy_tells_the_queue_the_child_s_training_flops_as_its_cost(tiny_env_kwargs: dict) -> None:
    """The queue's estimate: the forward FLOPs trained over (epochs of the unpruned net, fine-tuning epochs of the pruned one)."""
    from nasprune.controller.queue import evaluate
    from nasprune.decisions import EVALUATION_COST, PENDING

    tiny_env_kwargs["training"] = {"epochs": 2, "finetune_epochs": 1}
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs).unwrapped
    actions = [0, 1, 1, 1, 0, 0]  # conv3x3:8@0.5 | sepconv3x3:4@0
    _, pending = evaluate(env.decision_env(), 0, actions)
    _, info = evaluate(env, 0, actions)
    assert pending[PENDING] and "flops" not in pending
    assert pending[EVALUATION_COST] == 2 * info["flops_unpruned"] + 1 * info["flops"]
    assert info["flops_unpruned"] > info["flops"] > 0


def test_a_masked_action_ends_the_episode_with_the_penalty(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs, failure_reward=-2.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(3)  # identity
    _, reward, terminated, _, info = env.step(1)  # masked: an identity has no width choice
    assert terminated and reward == -2.0 and info["error_kind"] == "invalid_action"


def test_child_seeds_come_from_the_env_seed(tiny_env_kwargs: dict) -> None:
    def play(seed: int) -> float:
        env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
        env.reset(seed=seed)
        for action in [0, 1, 0, 0, 1, 0]:
            _, reward, *_ = env.step(action)
        return reward

    assert play(7) == play(7)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"search_space": {"ops": ["conv4x4"]}}, "search_space.ops"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer"),
        ({"reward": {"class_path": "nasprune.child.NoSuchReward"}}, "reward.class_path"),
        ({"datamodule": {"val_fraction": 0.5, "test_fraction": 0.45}}, "datamodule.init_args.test_fraction"),
    ],
)
def test_bad_env_arguments_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        gym.make("nasprune/NasPrune-v0", **kwargs)
    assert err.value.key == key


def test_observation_is_in_space_after_the_last_step(tiny_env_kwargs: dict) -> None:
    env = gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs)
    env.reset(seed=1)
    for action in [2, 0, 0, 3, 0, 0]:
        obs, *_ = env.step(action)
    assert env.observation_space.contains(obs)
    assert not np.any(obs["action_mask"])


def test_rich_space_masks_downsampling_by_the_datas_size() -> None:
    """Digits are 8×8: after three strided layers the map is 1×1 and a fourth may not downsample."""
    space = {
        "num_layers": 4,
        "ops": ["conv3x3", "identity"],
        "widths": [4],
        "prune_ratios": [0.0],
        "stem_width": 4,
        "downsample": ["none", "stride", "avgpool"],
        "skips": True,
        "skip_modes": ["add", "concat"],
    }
    env = gym.make("nasprune/NasPrune-v0", search_space=space, training={"epochs": 0, "finetune_epochs": 0})
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    masks = []
    for _ in range(3):  # conv3x3:4, strided, no skip: op, width, ratio, downsample, skip, skip mode
        for action in (0, 0, 0, 1, 0, 0):
            obs, *_ = env.step(action)
    for action in (0, 0, 0):
        obs, *_ = env.step(action)
    masks.append(obs["action_mask"].tolist())
    assert masks == [[1, 0, 0, 0, 0]]  # 8 → 4 → 2 → 1: only "none" is left
    obs, *_ = env.step(0)
    assert obs["action_mask"].tolist() == [1, 1, 1, 1, 1]  # the skip may come from h0..h3
    obs, *_ = env.step(4)
    _, reward, terminated, _, info = env.step(1)
    assert terminated and info["design_str"] == "conv3x3:4@0/2 | conv3x3:4@0/2 | conv3x3:4@0/2 | conv3x3:4@0&h3"
    assert "error" not in info and info["flops"] > 0


def test_a_latency_reward_needs_latency_measurement(tiny_env_kwargs: dict) -> None:
    reward = {"class_path": "nasprune.child.LinearReward", "init_args": {"cost": "latency_ms"}}
    with pytest.raises(ConfigError) as err:
        gym.make("nasprune/NasPrune-v0", **tiny_env_kwargs, reward=reward)
    assert err.value.key == "reward.init_args.cost"
    training = {**tiny_env_kwargs["training"], "latency_batch_size": 8, "latency_repeats": 2}
    env = gym.make("nasprune/NasPrune-v0", **{**tiny_env_kwargs, "training": training}, reward=reward)
    assert env.unwrapped.reward_fn.cost_ref > 0  # the costliest design's measured latency
    env.reset(seed=0)
    for action in [0, 1, 1, 1, 0, 0]:
        _, reward_value, *_, info = env.step(action)
    assert info["latency_ms"] > 0
    assert reward_value == pytest.approx(info["accuracy"] - 0.5 * info["latency_ms"] / info["reward/cost_ref"])
