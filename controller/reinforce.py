"""REINFORCE for the LSTM controller, as a LightningModule (Zoph & Le 2017; ENAS's settings).

One training step = one update from a batch of freshly played episodes:
    advantage_t = G_t − b_t        (G_t the discounted return from step t, b_t its EMA baseline)
    loss        = −Σ_t advantage_t · log π(a_t) / episodes − entropy_weight · mean entropy
    b_t        ← decay · b_t + (1 − decay) · mean over episodes of G_t
With `rank_advantages`, advantage_t is instead the centred rank of G_t among the update's episodes.

`distinct_designs` (off by default) is for NAS envs (one design per episode, one reward at its
end): sampling without replacement. Designs already evaluated are masked out,
  decision by decision (`DesignTree.unexplored`), in acting and in the replay that computes
  log π, so every episode evaluates a new design and the gradient is that of the policy that was
  sampled. A repeat teaches nothing: the env would return the cached result. A peaked policy then
  samples the most probable designs it has not tried, which are its mode's near neighbours.
  Episodes of one update are sampled before any of them is evaluated; at their last decision
  (when every design so far has the same length), each also avoids the designs completed by the
  update's earlier episodes, so a batch holds no design twice either.

The baseline is kept per step index. In a NAS env (one reward at the end, γ = 1) every G_t is
the episode's reward, so all b_t equal the classic EMA of rewards; in a dense-reward env
(CartPole) b_t tracks how much return usually remains at step t, and once the policy is good the
advantages shrink to zero instead of pushing it around.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from gymnasium import spaces
from gymnasium.vector.utils import concatenate, create_empty_array

from nasprune.config import ConfigError, DecayRate, PositiveCount, PositiveNumber
from nasprune.controller.design_tree import Design, DesignTree
from nasprune.controller.episode import Episode
from nasprune.controller.policy import LSTMPolicy
from nasprune.controller.strategy import SearchStrategy

RecurrentState = tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, list[Design]]  # LSTM state, previous actions, actions so far


class ReplayInputs(NamedTuple):
    """A batch of episodes as the policy replays it: observations (batch × steps, episode by
    episode), previous and taken actions and the mask of real steps, [episodes, steps]."""

    obs: Any
    prev_actions: torch.Tensor
    actions: torch.Tensor
    valid: torch.Tensor


def batch_observations(space: spaces.Space, observations: Sequence[Any], device: torch.device) -> Any:
    """Stack single observations of `space` into (nested) tensors with a leading batch dim."""
    stacked = concatenate(space, observations, create_empty_array(space, n=len(observations)))  # type: ignore[arg-type]  # gymnasium hints create_empty_array as possibly None; never for a real space
    return _to_tensor(stacked, device)


def _to_tensor(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict):
        return {k: _to_tensor(v, device) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_tensor(v, device) for v in value)
    return torch.as_tensor(np.asarray(value), device=device)


def discounted_returns(episodes: Sequence[Episode], gamma: float) -> torch.Tensor:
    """G_t = Σ_k γ^k r_{t+k} per episode, zero-padded to the longest episode: [episodes, steps]."""
    returns = torch.zeros(len(episodes), max(len(ep) for ep in episodes))
    for i, episode in enumerate(episodes):
        running = 0.0
        for t in reversed(range(len(episode))):
            running = episode.rewards[t] + gamma * running
            returns[i, t] = running
    return returns


def centred_ranks(returns: torch.Tensor, valid: torch.Tensor, pool: torch.Tensor | None = None, pool_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per step index, the rank of each episode's return among the episodes still running, mapped
    to [−½, ½] (ties share their mean rank): Σ_j sign(G_i − G_j) / (2(n − 1)). [episodes, steps].

    `pool` (with its `pool_valid` mask; it must contain the episodes themselves): rank among those
    returns instead of the batch's."""
    if pool is None or pool_valid is None:
        pool, pool_valid = returns, valid
    signs = torch.sign(returns.unsqueeze(1) - pool.unsqueeze(0))  # [i, j, steps]
    pairs = (signs * pool_valid.unsqueeze(0)).sum(dim=1)
    running = pool_valid.sum(dim=0, keepdim=True)
    return pairs / (2 * (running - 1)).clamp(min=1) * valid


class Reinforce(SearchStrategy):
    """An LSTM policy trained by REINFORCE on episodes from `EpisodeDataModule`.

    It acts in any env with a `Discrete` action space and reads any observation space; the
    CLI hands it the env's spaces.
    """

    baseline: torch.Tensor  # the buffers registered in __init__
    recent_returns: torch.Tensor
    best_return: torch.Tensor
    since_best: torch.Tensor
    restarts: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        hidden_size: PositiveCount = 64,
        embedding_size: int = 32,
        lr: PositiveNumber = 5e-3,
        baseline_decay: DecayRate = 0.9,
        entropy_weight: float = 1e-3,
        gamma: float = 1.0,
        temperature: PositiveNumber = 1.0,
        tanh_constant: float | None = None,
        normalize_advantages: bool = False,
        rank_advantages: bool = False,
        distinct_designs: bool = False,
        risk_seeking: float = 1.0,
        risk_window: int = 0,
        update_epochs: PositiveCount = 1,
        clip_ratio: PositiveNumber = 0.2,
        restart_patience: int = 0,
        restart_flatten: float | None = None,
        recent_window: PositiveCount = 20,
    ) -> None:
        """
        Args:
            observation_space: the env's observation space (linked from the data module by the CLI).
            action_space: the env's action space; must be `Discrete`.
            hidden_size: LSTM hidden units (ENAS: 64–100).
            embedding_size: size of the action embedding and of each encoded observation part.
            lr: Adam learning rate.
            baseline_decay: EMA decay of the reward baseline (ENAS: 0.95–0.99).
            entropy_weight: weight of the entropy bonus.
            gamma: discount of multi-step rewards (1.0 for NAS: one reward at the end).
            temperature: logits are divided by it before the optional tanh clipping.
            tanh_constant: if set, logits = C·tanh(logits) (ENAS: 1.1–2.5).
            normalize_advantages: divide advantages by the batch's standard deviation of returns
                (for dense-reward envs such as CartPole; leave off for one-reward-per-episode NAS envs).
            rank_advantages: replace G_t − b_t by the centred rank of G_t among the update's episodes,
                in [−½, ½] (the fitness shaping of natural evolution strategies, Wierstra et al. 2014;
                Salimans et al. 2017). A NAS reward's outliers — a broken cell at 10% next to good
                ones at 90% — then cannot flatten the differences between the good designs.
            distinct_designs: never sample a design evaluated before (needs an `action_mask` in
                the observations; see the module docstring).
            risk_seeking: ε of the risk-seeking policy gradient (Petersen et al. 2021): only the
                episodes at or above the update's (1 − ε) quantile of returns (or of their ranks)
                learn, with that quantile as baseline. 1.0: every episode, the plain gradient.
            risk_window: the quantile (and the ranks) are taken over the update's episodes and the
                `risk_window` episodes before them, so an episode learns only when it is among
                the best of the recent search, not just of its batch (0: the batch alone).
            update_epochs: gradient steps per update on its batch; the steps after the first
                maximise PPO's clipped surrogate (Schulman et al. 2017) with the batch's sampling
                probabilities as the old policy, so each evaluation serves several steps.
            clip_ratio: PPO's ε: how far π/π_old may move a step's probability within an update.
            restart_patience: after this many episodes without a return above the best so far,
                the next update starts from fresh weights, a fresh optimizer and an empty risk
                window — a policy collapsed near a local optimum explores again, as local search
                and evolution strategies restart (IPOP-CMA-ES, Auger & Hansen 2005). The designs
                evaluated stay known: with `distinct_designs` none is sampled again. 0: never.
            restart_flatten: at a restart, keep the weights but multiply the output layer (the
                logits) by this factor in (0, 1) instead of drawing fresh weights: the policy keeps
                its mode and spreads around it, varying every decision — a reheating rather than
                a new start. None: fresh weights.
            recent_window: episodes averaged into `search/reward_recent`.
        """
        super().__init__(observation_space, action_space, recent_window)
        if temperature <= 0:  # the CLI refuses it (its type); from Python it would only surface as NaN logits
            raise ConfigError("model.init_args.temperature", f"must be positive, got {temperature!r}")
        if normalize_advantages and rank_advantages:
            raise ConfigError("model.init_args.rank_advantages", "choose one of normalize_advantages and rank_advantages")
        if not 0.0 < risk_seeking <= 1.0:
            raise ConfigError("model.init_args.risk_seeking", f"must be in (0, 1], got {risk_seeking!r}")
        if risk_window < 0:
            raise ConfigError("model.init_args.risk_window", f"must be ≥ 0, got {risk_window!r}")
        if restart_patience < 0:
            raise ConfigError("model.init_args.restart_patience", f"must be ≥ 0, got {restart_patience!r}")
        if restart_flatten is not None and not 0.0 < restart_flatten < 1.0:
            raise ConfigError("model.init_args.restart_flatten", f"must be in (0, 1), got {restart_flatten!r}")
        if not 0.0 <= baseline_decay < 1.0:  # the CLI refuses it (its type); from Python the baseline would silently diverge
            raise ConfigError("model.init_args.baseline_decay", f"must be in [0, 1), got {baseline_decay!r}")
        if distinct_designs and not (isinstance(observation_space, spaces.Dict) and "action_mask" in observation_space.spaces):
            raise ConfigError("model.init_args.distinct_designs", "needs an env whose observations carry an action_mask")
        self.save_hyperparameters(ignore=["observation_space", "action_space"])
        self.lr, self.baseline_decay, self.entropy_weight, self.gamma = lr, baseline_decay, entropy_weight, gamma
        self.normalize_advantages, self.rank_advantages = normalize_advantages, rank_advantages
        self.distinct_designs = distinct_designs
        self.risk_seeking, self.risk_window = risk_seeking, risk_window
        self.update_epochs, self.clip_ratio = update_epochs, clip_ratio
        self.restart_patience, self.restart_flatten = restart_patience, restart_flatten
        assert observation_space is not None and action_space is not None  # the CLI links them from the data module
        self.designs = DesignTree()  # what was evaluated: masks the next samples with `distinct_designs`
        self.taken: set[Design] = set()  # designs sampled for the update being played (not evaluated yet)
        self.policy = LSTMPolicy(
            observation_space, int(cast(spaces.Discrete, action_space).n), hidden_size, embedding_size, temperature, tanh_constant
        )
        # b_t per step index, NaN until step t is first seen; grows with the longest episode
        self.register_buffer("baseline", torch.empty(0))
        # the returns of the last `risk_window` episodes [episodes, steps], NaN past an episode's end
        self.register_buffer("recent_returns", torch.empty(0, 0))
        # the best episode return so far, the episodes played since it was reached, the restarts made
        self.register_buffer("best_return", torch.tensor(float("-inf")))
        self.register_buffer("since_best", torch.tensor(0))
        self.register_buffer("restarts", torch.tensor(0))
        # actions are sampled from a generator of their own (saved in checkpoints), so a resumed
        # search samples exactly what the uninterrupted one would, whatever else draws from
        # torch's global generator in between (Lightning does, when it starts a data loader).
        # Its seed is drawn from the global generator (set by seed_everything): seeding it with
        # the global seed itself would replay the very numbers that initialised the weights.
        self.sampler = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """The baseline's length is that of the longest episode so far: take the checkpoint's (and
        the recent returns' shape)."""
        for name in ("baseline", "recent_returns"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sampler_rng"] = self.sampler.get_state()
        if self.distinct_designs:
            checkpoint["designs"] = self.designs.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "sampler_rng" in checkpoint:
            self.sampler.set_state(checkpoint["sampler_rng"])
        if "designs" in checkpoint:
            self.designs.load_state_dict(checkpoint["designs"])

    # ---- acting (called by the data module while it plays episodes) ----

    def initial_state(self) -> RecurrentState:
        return self.initial_states(1)

    def initial_states(self, n: int) -> RecurrentState:
        return self.policy.initial_state(n, self.device), self.policy.start_actions(n, self.device), [() for _ in range(n)]

    def act(self, observation: Any, state: RecurrentState, greedy: bool = False) -> tuple[int, RecurrentState]:
        (action,), state = self.act_batch([observation], state, greedy)
        return action, state

    @torch.no_grad()
    def act_batch(
        self, observations: Sequence[Any], states: RecurrentState, greedy: bool = False
    ) -> tuple[list[int], RecurrentState]:
        """One batched forward of the policy for several episodes played side by side."""
        recurrent, prev_action, prefixes = states
        obs = batch_observations(self.observation_space, observations, self.device)
        if self.distinct_designs:
            obs["action_mask"] = self._unexplored_masks(obs["action_mask"], prefixes)
        logits, recurrent = self.policy(obs, prev_action, recurrent)
        if greedy:
            action = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            action = torch.multinomial(probs, 1, generator=self.sampler).squeeze(1).to(logits.device)
            if self.distinct_designs:
                action = self._avoid_taken(action, probs, obs["action_mask"].cpu(), prefixes)
        actions = action.tolist()
        return actions, (recurrent, action, [prefix + (a,) for prefix, a in zip(prefixes, actions)])

    def _taken_children(self, prefix: Design, mask: torch.Tensor, taken: set[Design]) -> list[int]:
        """The allowed last decisions after `prefix` that would complete a design in `taken`; none
        if they are all of the allowed ones (the sample then repeats a design)."""
        allowed = torch.nonzero(mask).flatten().tolist()
        excluded = [a for a in allowed if prefix + (a,) in taken]
        return excluded if len(excluded) < len(allowed) else []

    def _avoid_taken(self, action: torch.Tensor, probs: torch.Tensor, masks: torch.Tensor, prefixes: Sequence[Design]) -> torch.Tensor:
        """At a design's last decision, redraw it, one episode after the other, without the
        designs the update's earlier episodes completed (the replay masks them the same way)."""
        length = self.designs.length
        for i, prefix in enumerate(prefixes):
            if length is None or len(prefix) != length - 1 or not masks[i].any():
                continue
            excluded = self._taken_children(prefix, masks[i], self.taken)
            if excluded:
                p = probs[i].clone()
                p[excluded] = 0.0
                if p.sum() == 0:  # every remaining probability underflowed: uniform over the rest
                    p = masks[i].float()
                    p[excluded] = 0.0
                action[i] = torch.multinomial(p, 1, generator=self.sampler).item()
            self.taken.add(prefix + (int(action[i]),))
        return action

    def _unexplored_masks(self, masks: torch.Tensor, prefixes: Sequence[Design]) -> torch.Tensor:
        """The env's masks [batch, actions] less the actions whose every continuation was evaluated."""
        if not self.designs.closed:
            return masks
        rows = masks.cpu().numpy()
        out = np.stack([self.designs.unexplored(prefix, row) for prefix, row in zip(prefixes, rows)])
        return torch.as_tensor(out, device=masks.device)

    # ---- learning ----

    def _replay(self, episodes: Sequence[Episode], unexplored: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies of the taken actions, with gradients: [episodes, steps].

        `unexplored`: under the masks they were sampled with (`distinct_designs`, before this
        batch joins the tree)."""
        inputs = self._replay_inputs(episodes, unexplored)
        return *self._score(inputs), inputs.valid

    def _replay_inputs(self, episodes: Sequence[Episode], unexplored: bool) -> ReplayInputs:
        """What `_score` feeds the policy for `episodes`; built once per update, scored once per epoch."""
        n, steps = len(episodes), max(len(ep) for ep in episodes)
        valid = torch.zeros(n, steps, device=self.device)
        actions = torch.zeros(n, steps, dtype=torch.long, device=self.device)
        for i, episode in enumerate(episodes):
            valid[i, : len(episode)] = 1.0
            actions[i, : len(episode)] = torch.as_tensor(episode.actions)
        # finished episodes replay their last observation; their steps are masked by `valid`
        obs = batch_observations(
            self.observation_space, [ep.observations[min(t, len(ep) - 1)] for ep in episodes for t in range(steps)], self.device
        )
        if unexplored:
            prefixes = [tuple(ep.actions[: min(t, len(ep) - 1)]) for ep in episodes for t in range(steps)]
            masks = self._unexplored_masks(obs["action_mask"], prefixes).clone()
            length, taken = self.designs.length, set[Design]()
            for i, episode in enumerate(episodes):
                if length is not None and len(episode) == length:
                    row = i * steps + length - 1
                    masks[row, self._taken_children(tuple(episode.actions[:-1]), masks[row], taken)] = 0
                    taken.add(tuple(episode.actions))
            obs["action_mask"] = masks
        prev_actions = torch.cat([self.policy.start_actions(n, self.device).unsqueeze(1), actions[:, :-1]], dim=1)
        return ReplayInputs(obs, prev_actions, actions, valid)

    def _score(self, inputs: ReplayInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The current policy's log π of the replayed actions and its entropies: [episodes, steps]."""
        n = inputs.actions.shape[0]
        logits, _ = self.policy.forward_sequence(inputs.obs, inputs.prev_actions, self.policy.initial_state(n, self.device))
        log_policy = torch.log_softmax(logits, dim=-1)
        log_probs = log_policy.gather(-1, inputs.actions.unsqueeze(-1)).squeeze(-1)
        entropies = -(log_policy.exp() * log_policy).sum(dim=-1)
        return log_probs, entropies

    @torch.no_grad()
    def log_likelihoods(self, episodes: Sequence[Episode]) -> list[float]:
        """log π(actions) of each episode under the current weights: the data module's importance weights of stale episodes."""
        log_probs, _, valid = self._replay(episodes)
        return (log_probs * valid).sum(dim=1).tolist()

    def training_step(self, dataloader_iter: Iterator) -> torch.Tensor:
        if self.restart_patience and self.since_best >= self.restart_patience:
            self._restart()  # before this update's episodes are played: the fresh policy plays them
        episodes, _, _ = next(dataloader_iter)  # played now, with the current weights
        n = len(episodes)
        self._track_best(episodes)
        inputs = self._replay_inputs(episodes, unexplored=self.distinct_designs)
        log_probs, entropies = self._score(inputs)
        valid = inputs.valid
        returns = discounted_returns(episodes, self.gamma).to(self.device)
        steps = returns.shape[1]
        if self.baseline.numel() < steps:
            unseen = torch.full((steps - self.baseline.numel(),), float("nan"), device=self.device)
            self.baseline = torch.cat([self.baseline, unseen])
        mean_returns = (returns * valid).sum(dim=0) / valid.sum(dim=0)  # every step index < steps is seen
        baseline = torch.where(torch.isnan(self.baseline[:steps]), mean_returns, self.baseline[:steps])

        # importance weights of stale episodes (data.max_staleness): 1 when sampled by these weights
        weights = torch.tensor([episode.weight for episode in episodes], device=self.device).unsqueeze(1)
        advantages = weights * self._advantages(returns, valid, baseline)
        policy_loss = -(advantages.detach() * log_probs).sum() / n
        entropy = (entropies * valid).sum() / valid.sum()
        loss = policy_loss - self.entropy_weight * entropy
        logged = {"entropy": entropy.detach(), "loss": loss.detach(), "policy_loss": policy_loss.detach()}
        old_log_probs = log_probs.detach()
        for _ in range(self.update_epochs - 1):
            self._step_within_update(loss)
            log_probs, entropies = self._score(inputs)
            ratio = torch.exp(log_probs - old_log_probs)
            clipped = ratio.clamp(1.0 - self.clip_ratio, 1.0 + self.clip_ratio)
            surrogate = torch.minimum(ratio * advantages.detach(), clipped * advantages.detach())
            loss = -(surrogate * valid).sum() / n - self.entropy_weight * (entropies * valid).sum() / valid.sum()
        if self.distinct_designs:
            for episode in episodes:
                self.designs.add(episode.actions, episode.total_reward, (np.flatnonzero(obs["action_mask"]) for obs in episode.observations))
            self.taken.clear()

        if self.restart_patience:
            logged["restarts"] = self.restarts.float()
        self.log_search(episodes, baseline=baseline[0], **logged)  # the update's first step: the REINFORCE loss
        with torch.no_grad():
            decay = self.baseline_decay
            self.baseline[:steps] = decay * baseline + (1.0 - decay) * mean_returns
        return loss

    def _track_best(self, episodes: Sequence[Episode]) -> None:
        """The best return so far and the episodes since it was reached (`restart_patience`)."""
        best = max(episode.total_reward for episode in episodes)
        if best > self.best_return:
            self.best_return.fill_(best)
            self.since_best.zero_()
        else:
            self.since_best.add_(len(episodes))

    def _restart(self) -> None:
        """Fresh policy weights (drawn from the action sampler's generator, so a resumed search
        restarts to the same weights) or flattened logits (`restart_flatten`), a fresh Adam
        state, an empty risk window and baseline."""
        if self.restart_flatten is not None:
            with torch.no_grad():
                self.policy.head.weight.mul_(self.restart_flatten)
                self.policy.head.bias.mul_(self.restart_flatten)
        else:
            seed = int(torch.randint(2**62, (), generator=self.sampler).item())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for module in self.policy.modules():
                    if isinstance(module, (nn.Embedding, nn.Linear, nn.LSTMCell)):  # the policy's layers; each draws PyTorch's default init
                        module.reset_parameters()
        optimizer = cast(torch.optim.Optimizer, self.optimizers().optimizer)  # type: ignore[union-attr]  # one optimizer: a LightningOptimizer
        optimizer.state.clear()
        self.recent_returns = torch.empty(0, 0, device=self.device)
        self.baseline = torch.empty(0, device=self.device)
        self.since_best.zero_()
        self.restarts.add_(1)

    def _advantages(self, returns: torch.Tensor, valid: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
        """G_t − b_t, or the ranks, or their risk-seeking part; optionally normalised. [episodes, steps]"""
        advantages = (returns - baseline) * valid
        pool = self._return_pool(returns, valid)
        if self.rank_advantages:
            advantages = centred_ranks(returns, valid, pool.nan_to_num(), (~pool.isnan()).float())
        if self.risk_seeking < 1.0:
            # ranks in [−½, ½] are the pool's empirical CDF less ½: its (1 − ε) quantile is ½ − ε
            quantile = 0.5 - self.risk_seeking if self.rank_advantages else torch.nanquantile(pool, 1.0 - self.risk_seeking, dim=0)
            advantages = ((advantages if self.rank_advantages else returns) - quantile).clamp(min=0) * valid
        if self.normalize_advantages and valid.sum() > 1:
            # scale by the spread of the returns, not of the advantages: once the policy is good the
            # advantages shrink towards zero and stay there, instead of being blown back up to unit
            # variance (which makes a converged policy drift)
            mean = (returns * valid).sum() / valid.sum()
            std = (((returns - mean) * valid) ** 2).sum().div(valid.sum() - 1).sqrt()
            advantages = advantages / std.clamp(min=1e-8)
        return advantages

    def _return_pool(self, returns: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The returns that ranks and quantiles compare with, NaN where no step: the update's and,
        with `risk_window`, the recent episodes' (kept for the next update). [episodes, steps]"""
        pool = returns.masked_fill(valid == 0, float("nan"))
        if not self.risk_window:
            return pool
        steps = max(pool.shape[1], self.recent_returns.shape[1])
        recent = F.pad(self.recent_returns, (0, steps - self.recent_returns.shape[1]), value=float("nan"))
        pool = torch.cat([recent, F.pad(pool, (0, steps - pool.shape[1]), value=float("nan"))])
        self.recent_returns = pool[-self.risk_window :].clone()
        return pool[:, : returns.shape[1]]

    def _step_within_update(self, loss: torch.Tensor) -> None:
        """One of an update's extra gradient steps (`update_epochs`), on the raw optimizer: Lightning
        counts one step per update (`trainer.max_steps` stays the number of batches played) and
        takes the update's last step itself with the loss `training_step` returns."""
        optimizer = cast(torch.optim.Optimizer, self.optimizers().optimizer)  # type: ignore[union-attr]  # one optimizer: a LightningOptimizer
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.policy.parameters(), lr=self.lr)
