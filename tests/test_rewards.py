from __future__ import annotations

import pytest

from nasprune.child import AMCReward, HardBudgetReward, LinearReward, MnasNetReward, TargetWindowReward
from nasprune.config import ConfigError


def test_linear_reward_on_hand_computed_numbers() -> None:
    reward = LinearReward(alpha=2.0, beta=0.5, cost="flops", cost_ref=1000.0)
    out = reward({"accuracy": 0.9, "flops": 400, "params": 7})
    assert out["reward/accuracy_term"] == pytest.approx(1.8)
    assert out["reward/cost_term"] == pytest.approx(0.2)
    assert out["reward"] == pytest.approx(1.6)
    assert out["reward/cost_ref"] == 1000.0


def test_linear_reward_on_params_with_reference_from_env() -> None:
    reward = LinearReward(alpha=1.0, beta=1.0, cost="params").with_reference({"flops": 10.0, "params": 200.0})
    assert reward({"accuracy": 0.5, "flops": 1, "params": 50})["reward"] == pytest.approx(0.25)


def test_explicit_reference_is_kept() -> None:
    reward = LinearReward(cost_ref=5.0).with_reference({"flops": 10.0, "params": 1.0})
    assert reward.cost_ref == 5.0




def test_linear_reward_on_latency_and_size_costs() -> None:
    reward = LinearReward(alpha=1.0, beta=0.2, cost="latency_ms").with_reference({"flops": 1.0, "latency_ms": 8.0})
    assert reward.metrics_needed == ("accuracy", "latency_ms")
    assert reward({"accuracy": 0.75, "latency_ms": 2.0})["reward"] == pytest.approx(0.75 - 0.2 * 0.25)
    assert LinearReward(cost="size_bytes", cost_ref=4000)({"accuracy": 0.5, "size_bytes": 1000})["reward"] == pytest.approx(0.375)


def test_mnasnet_soft_constraint_on_hand_computed_numbers() -> None:
    reward = MnasNetReward(target=1000.0, weight=-0.07, cost="flops")
    over = reward({"accuracy": 0.9, "flops": 2000})  # twice the target: 0.9 · 2^−0.07
    assert over["reward/cost_factor"] == pytest.approx(0.952638, abs=1e-6)
    assert over["reward"] == pytest.approx(0.857374, abs=1e-6)
    under = reward({"accuracy": 0.9, "flops": 500})  # half the target: 0.9 · 0.5^−0.07 = 0.9 · 1.049717
    assert under["reward"] == pytest.approx(0.944745, abs=1e-6)
    assert reward({"accuracy": 0.9, "flops": 1000})["reward"] == pytest.approx(0.9)
    assert MnasNetReward(target=10.0, weight=-1.0, cost="params")({"accuracy": 0.8, "params": 40})["reward"] == pytest.approx(0.2)


def test_amc_reward_on_hand_computed_numbers() -> None:
    out = AMCReward()({"accuracy": 0.9, "flops": 1_000_000})
    assert out["reward/error"] == pytest.approx(0.1)
    assert out["reward/log_cost"] == pytest.approx(13.815511, abs=1e-6)  # ln(10^6)
    assert out["reward"] == pytest.approx(-1.3815511, abs=1e-7)
    assert AMCReward(scale=2.0)({"accuracy": 0.5, "flops": 100})["reward"] == pytest.approx(-0.5 * 4.605170 / 2, abs=1e-6)
    # lower error wins first: 1% more accuracy outweighs 10× the FLOPs here
    assert AMCReward()({"accuracy": 0.95, "flops": 1e7})["reward"] > AMCReward()({"accuracy": 0.94, "flops": 1e6})["reward"]


def test_hard_budget_reward() -> None:
    reward = HardBudgetReward(budget=1000.0, cost="params", penalty=-0.5, alpha=2.0)
    assert reward({"accuracy": 0.8, "params": 1000}) == {"reward": 1.6, "reward/over_budget": 0.0, "reward/budget": 1000.0}
    assert reward({"accuracy": 0.99, "params": 1001})["reward"] == -0.5
    assert reward({"accuracy": 0.99, "params": 1001})["reward/over_budget"] == 1.0


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (MnasNetReward, {}, "target"),
        (HardBudgetReward, {}, "budget"),
        (TargetWindowReward, {}, "target"),
    ],
)
def test_bad_arguments_of_the_other_rewards(cls: type, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert err.value.key == key
