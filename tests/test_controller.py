from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from gymnasium import spaces
from pytorch_lightning.callbacks import EarlyStopping

import toy_envs  # noqa: F401  (registers TargetSequence-v0)
from nasprune.controller import Episode, EpisodeDataModule, LSTMPolicy, ObservationEncoder, Reinforce, discounted_returns
from nasprune.config import ConfigError
from nasprune.controller.reinforce import batch_observations, centred_ranks


def fit(data: EpisodeDataModule, updates: int, **model_kwargs: float) -> Reinforce:
    model = Reinforce(data.observation_space, data.action_space, **model_kwargs)
    trainer = pl.Trainer(
        max_steps=updates,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=data)
    return model


def greedy_actions(model: Reinforce, data: EpisodeDataModule) -> list[int]:
    obs, _ = data.env.reset()
    state = model.initial_state()
    actions = []
    done = False
    while not done:
        action, state = model.act(obs, state, greedy=True)
        actions.append(action)
        obs, _, terminated, truncated, _ = data.env.step(action)
        done = terminated or truncated
    return actions


def test_controller_reaches_the_optimum_of_a_deterministic_env() -> None:
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=8)
    model = fit(data, updates=120, lr=0.03, entropy_weight=0.0, baseline_decay=0.8)
    assert greedy_actions(model, data) == [2, 0, 1, 2]
    assert data.history.best is not None and data.history.best["reward"] == 1.0
    assert model.episodes_done.item() == 120 * 8 == data.episodes_played


def test_controller_never_samples_a_masked_action() -> None:
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", env_kwargs={"target": (0, 2, 1), "masked": True}, episodes_per_update=8)
    model = fit(data, updates=40, lr=0.03, entropy_weight=0.0)
    # action 0 is forbidden, so the best reachable design matches 2 of 3 steps
    assert greedy_actions(model, data) == [1, 2, 1] or greedy_actions(model, data)[1:] == [2, 1]
    assert data.history.best is not None and data.history.best["reward"] == pytest.approx(2 / 3)


def test_episodes_are_played_with_the_current_weights() -> None:
    """No prefetch: the batch used by update k is sampled after update k−1 changed the weights."""
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=2)
    model = Reinforce(data.observation_space, data.action_space, lr=0.05)
    snapshots: list[torch.Tensor] = []
    original_act_batch = model.act_batch

    def recording_act_batch(observations, states, greedy=False):  # noqa: ANN001, ANN202
        if observations[0] == 0:
            snapshots.append(model.policy.head.weight.detach().clone())
        return original_act_batch(observations, states, greedy)

    model.act_batch = recording_act_batch  # type: ignore[method-assign]
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    assert len(snapshots) == 6  # 3 updates × 2 episodes: nothing was played ahead
    assert torch.equal(snapshots[0], snapshots[1])
    assert not torch.equal(snapshots[1], snapshots[2])  # update 1 changed the weights before batch 2
    assert not torch.equal(snapshots[3], snapshots[4])


def test_early_stopping_on_the_recent_reward_after_each_update() -> None:
    """`updates_per_epoch=1` lets Lightning's EarlyStopping stop a search once it is good enough."""
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=8, updates_per_epoch=1)
    model = Reinforce(data.observation_space, data.action_space, lr=0.03, entropy_weight=0.0, recent_window=16)
    stop = EarlyStopping("search/reward_recent", mode="max", stopping_threshold=0.9, patience=10**6, check_on_train_epoch_end=True)
    trainer = pl.Trainer(max_steps=500, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[stop])
    trainer.fit(model, datamodule=data)
    assert trainer.global_step < 500 and trainer.current_epoch == trainer.global_step
    assert model.recent_rewards.shape == (16,)
    assert model.recent_rewards.mean().item() >= 0.9
    assert trainer.callback_metrics["search/reward_recent"].item() == pytest.approx(model.recent_rewards.mean().item())


def test_discounted_returns() -> None:
    episodes = [
        Episode(0, [0, 1, 2], [0, 0, 0], [1.0, 1.0, 1.0]),
        Episode(1, [0], [1], [2.0]),
    ]
    returns = discounted_returns(episodes, gamma=0.5)
    assert returns.tolist() == [[1.75, 1.5, 1.0], [2.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "space",
    [
        spaces.Box(-1.0, 1.0, shape=(4,)),
        spaces.Discrete(5, start=2),
        spaces.MultiBinary(3),
        spaces.MultiDiscrete([3, 4]),
        spaces.Dict({"step": spaces.Discrete(4), "x": spaces.Box(0, 1, (2, 2)), "action_mask": spaces.MultiBinary(3)}),
        spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (3,)))),
    ],
    ids=lambda s: type(s).__name__,
)
def test_encoder_reads_any_space(space: spaces.Space) -> None:
    space.seed(0)
    encoder = ObservationEncoder(space, features=8)
    batch = batch_observations(space, [space.sample() for _ in range(5)], torch.device("cpu"))
    features = encoder(batch)
    assert features.shape == (5, encoder.out_features)
    assert torch.isfinite(features).all()


def test_policy_masks_logits_and_clips_with_tanh() -> None:
    space = spaces.Dict({"step": spaces.Discrete(3), "action_mask": spaces.MultiBinary(4)})
    policy = LSTMPolicy(space, n_actions=4, tanh_constant=1.5, temperature=2.0)
    obs = {"step": torch.tensor([0, 1]), "action_mask": torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.int8)}
    logits, _ = policy(obs, policy.start_actions(2), policy.initial_state(2))
    probs = torch.softmax(logits, dim=-1)
    assert probs[0, 0].item() == 0 and probs[0, 3].item() == 0 and probs[1, 0].item() == pytest.approx(1.0)
    unmasked = logits[0, 1:3]
    assert (unmasked.abs() <= 1.5).all()


def test_replaying_whole_episodes_gives_the_logits_of_acting_step_by_step() -> None:
    """Learning replays episodes in one batch (`_replay`); it must score exactly what acting sampled."""
    torch.manual_seed(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", env_kwargs={"target": (0, 2, 1), "masked": True}, episodes_per_update=3)
    model = Reinforce(data.observation_space, data.action_space, tanh_constant=2.0, temperature=1.5)
    episodes, stepwise = [], []
    for index in range(3):
        obs, _ = data.env.reset(seed=index)
        state, observations, actions, log_probs, done = model.initial_state(), [], [], [], False
        while not done:
            logits, _ = model.policy(batch_observations(data.observation_space, [obs], model.device), state[1], state[0])
            action, state = model.act(obs, state)
            log_probs.append(torch.log_softmax(logits, dim=-1)[0, action])
            observations.append(obs)
            actions.append(action)
            obs, _, terminated, truncated, _ = data.env.step(action)
            done = terminated or truncated
        episodes.append(Episode(index, observations, actions, [0.0] * len(actions)))
        stepwise.append(torch.stack(log_probs))
    first = episodes[0]
    episodes.append(Episode(3, first.observations[:2], first.actions[:2], [0.0, 0.0]))  # a shorter one, padded
    replayed, entropies, valid = model._replay(episodes)
    assert valid.tolist() == [[1.0, 1.0, 1.0]] * 3 + [[1.0, 1.0, 0.0]]
    assert torch.allclose(replayed[:3], torch.stack(stepwise), atol=1e-6)
    assert torch.allclose(replayed[3, :2], stepwise[0][:2], atol=1e-6)
    assert (entropies >= 0).all() and replayed.requires_grad


def test_centred_ranks_of_returns() -> None:
    returns = torch.tensor([[3.0, 3.0], [1.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    valid = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # two episodes end after one step
    # step 0: ranks 4, 1, 2.5, 2.5 of 4 → (r − 2.5) / 3; step 1: 3 beats 1 among the two still running
    assert centred_ranks(returns, valid).tolist() == [[0.5, 0.5], [-0.5, -0.5], [0.0, 0.0], [0.0, 0.0]]
    with pytest.raises(ConfigError, match="rank_advantages"):
        Reinforce(spaces.Discrete(2), spaces.Discrete(2), normalize_advantages=True, rank_advantages=True)


def test_risk_seeking_advantages_keep_the_best_of_the_batch_or_of_the_recent_window() -> None:
    returns = torch.tensor([[4.0], [1.0], [3.0], [2.0], [0.0]])
    valid = torch.ones(5, 1)
    baseline = torch.zeros(1)
    plain = Reinforce(spaces.Discrete(2), spaces.Discrete(2), risk_seeking=0.5)
    # the 0.5 quantile of 0…4 is 2: only 4 and 3 learn, by G − 2
    assert plain._advantages(returns, valid, baseline).flatten().tolist() == [2.0, 0.0, 1.0, 0.0, 0.0]
    ranked = Reinforce(spaces.Discrete(2), spaces.Discrete(2), rank_advantages=True, risk_seeking=0.25)
    # centred ranks ½, −¼, ¼, 0, −½ less ½ − ¼
    assert ranked._advantages(returns, valid, baseline).flatten().tolist() == [0.25, 0.0, 0.0, 0.0, 0.0]
    windowed = Reinforce(spaces.Discrete(2), spaces.Discrete(2), rank_advantages=True, risk_seeking=0.5, risk_window=3)
    assert windowed._advantages(torch.tensor([[5.0], [6.0]]), torch.ones(2, 1), baseline).flatten().tolist() == [0.0, 0.5]
    assert windowed.recent_returns.flatten().tolist() == [5.0, 6.0]
    # next batch: ranks among 5, 6 (the window) and itself; 7 beats all three, 5.5 one of three
    advantages = windowed._advantages(torch.tensor([[7.0], [5.5]]), torch.ones(2, 1), baseline)
    assert torch.allclose(advantages.flatten(), torch.tensor([0.5, 0.0])) and windowed.recent_returns.flatten().tolist() == [6.0, 7.0, 5.5]
    assert torch.allclose(centred_ranks(torch.tensor([[5.5]]), torch.ones(1, 1), torch.tensor([[5.0], [6.0], [7.0], [5.5]]), torch.ones(4, 1)),
                          torch.tensor([[-1 / 6]]))
    # (update_epochs and clip_ratio are refused by the CLI's typing: `test_faults`)
    for key, kwargs in (("risk_seeking", {"risk_seeking": 0.0}), ("risk_window", {"risk_window": -1}), ("restart_patience", {"restart_patience": -1}),
                        ("restart_flatten", {"restart_flatten": 1.0})):
        with pytest.raises(ConfigError, match=f"model.init_args.{key}"):
            Reinforce(spaces.Discrete(2), spaces.Discrete(2), **kwargs)


def test_rank_advantages_reach_the_optimum() -> None:
    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=8)
    model = fit(data, updates=120, lr=0.03, entropy_weight=0.0, rank_advantages=True)
    assert greedy_actions(model, data) == [2, 0, 1, 2]


def test_checkpoint_keeps_baseline_and_best() -> None:
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=4)
    model = fit(data, updates=3)
    state = model.state_dict()
    assert {"baseline", "episodes_done"} <= set(state)
    assert model.baseline.shape == (4,)  # one entry per step of the 4-step episodes
    restored = Reinforce(data.observation_space, data.action_space)
    restored.load_state_dict(state)
    assert torch.equal(restored.baseline, model.baseline)
    # the best so far is the run history's, in the data module's part of the checkpoint
    restored_data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=4)
    restored_data.load_state_dict(data.state_dict())
    assert data.history.best is not None and restored_data.history.best == data.history.best
    assert restored_data.history.episodes == data.episodes_played == 12


def test_search_curves_follow_log_every_n_steps(tmp_path) -> None:
    """Curves are written every `log_every_n_steps` updates; the last update still reaches the callbacks."""
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pl.seed_everything(0)
    data = EpisodeDataModule("toy_envs:TargetSequence-v0", episodes_per_update=2)
    model = Reinforce(data.observation_space, data.action_space)
    logger = TensorBoardLogger(tmp_path, name="", version="")
    trainer = pl.Trainer(max_steps=7, log_every_n_steps=3, logger=logger, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(model, datamodule=data)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Scalars("search/episodes")] == [2, 5]
    assert [e.value for e in events.Scalars("search/episodes")] == [6.0, 12.0]
    assert model.episodes_done.item() == trainer.callback_metrics["search/episodes"].item() == 14
