from __future__ import annotations

import pytest

from nasprune.child import LinearReward
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


@pytest.mark.parametrize(("kwargs", "key"), [({"cost": "latency"}, "cost"), ({"cost_ref": 0.0}, "cost_ref")])
def test_bad_reward_arguments(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        LinearReward(**kwargs)
    assert err.value.key == key
