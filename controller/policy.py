"""The controller's policy: a generic observation encoder feeding an autoregressive LSTM.

As in NAS-RL (Zoph & Le 2017), the action sampled at each step is embedded and fed back in; the
observation is encoded alongside it, so the same policy reads a NAS env's Dict observation or
CartPole's Box. Logits are optionally temperature-scaled and tanh-clipped (ENAS) and masked by
the observation's `action_mask` when it has one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn


class ObservationEncoder(nn.Module):
    """Encodes any (nested) Gymnasium space into one feature vector per batch element.

    Discrete → embedding; Box, MultiBinary → linear on the flattened values; MultiDiscrete →
    one embedding per component; Dict and Tuple → the concatenation of their parts. Keys named in
    `skip_keys` (the action mask) are not encoded.
    """

    def __init__(self, space: spaces.Space, features: int, skip_keys: tuple[str, ...] = ("action_mask",)) -> None:
        super().__init__()
        self.space = space
        self.skip_keys = skip_keys
        self.parts = nn.ModuleDict()
        self.out_features = self._build(space, "", features)

    def _build(self, space: spaces.Space, name: str, features: int) -> int:
        key = name or "obs"
        if isinstance(space, spaces.Dict):
            return sum(
                self._build(sub, f"{name}.{k}" if name else k, features)
                for k, sub in space.spaces.items()
                if k not in self.skip_keys
            )
        if isinstance(space, spaces.Tuple):
            return sum(self._build(sub, f"{name}.{i}" if name else str(i), features) for i, sub in enumerate(space.spaces))
        key = key.replace(".", "__")
        if isinstance(space, spaces.Discrete):
            self.parts[key] = nn.Embedding(int(space.n), features)
        elif isinstance(space, spaces.MultiDiscrete):
            self.parts[key] = nn.Embedding(int(np.sum(space.nvec)), features)
        elif isinstance(space, (spaces.Box, spaces.MultiBinary)):
            self.parts[key] = nn.Linear(int(np.prod(space.shape)), features)
        else:
            raise TypeError(f"cannot encode observation space {space!r}")
        return features

    def forward(self, obs: Any) -> torch.Tensor:
        return torch.cat(self._encode(self.space, obs, ""), dim=-1)

    def _encode(self, space: spaces.Space, obs: Any, name: str) -> list[torch.Tensor]:
        if isinstance(space, spaces.Dict):
            out = []
            for k, sub in space.spaces.items():
                if k not in self.skip_keys:
                    out += self._encode(sub, obs[k], f"{name}.{k}" if name else k)
            return out
        if isinstance(space, spaces.Tuple):
            out = []
            for i, sub in enumerate(space.spaces):
                out += self._encode(sub, obs[i], f"{name}.{i}" if name else str(i))
            return out
        layer = self.parts[(name or "obs").replace(".", "__")]
        if isinstance(space, spaces.Discrete):
            return [layer(obs.long() - int(space.start))]
        if isinstance(space, spaces.MultiDiscrete):
            flat = obs.long().reshape(obs.shape[0], -1)
            offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(space.nvec.ravel())[:-1]]), device=flat.device)
            return [layer(flat + offsets).sum(dim=1)]
        return [layer(obs.float().reshape(obs.shape[0], -1))]


class LSTMPolicy(nn.Module):
    """(previous action, observation) → LSTMCell → action logits.

    Acting calls it one step at a time; learning replays whole episodes with `forward_sequence`,
    which encodes every step's inputs (all known by then) in one batch and loops only the cell.
    (An `nn.LSTM` would fuse the loop too, but costs 2.5× an `LSTMCell` for the single steps of acting.)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        n_actions: int,
        hidden_size: int = 64,
        embedding_size: int = 32,
        temperature: float = 1.0,
        tanh_constant: float | None = None,
        mask_key: str = "action_mask",
    ) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.hidden_size = hidden_size
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.mask_key = mask_key
        self.encoder = ObservationEncoder(observation_space, embedding_size, skip_keys=(mask_key,))
        # index n_actions is the start token fed before the first decision
        self.action_embedding = nn.Embedding(n_actions + 1, embedding_size)
        self.cell = nn.LSTMCell(embedding_size + self.encoder.out_features, hidden_size)
        self.head = nn.Linear(hidden_size, n_actions)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch_size, self.hidden_size, device=device)
        return zeros, zeros.clone()

    def start_actions(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.full((batch_size,), self.n_actions, dtype=torch.long, device=device)

    def forward(
        self, obs: Any, prev_action: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One step: masked logits [batch, actions] and the next recurrent state."""
        logits, state = self.forward_sequence(obs, prev_action.unsqueeze(1), state)
        return logits[:, 0], state

    def forward_sequence(
        self, obs: Any, prev_actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Several steps: `obs` holds batch × steps observations, episode by episode, and
        `prev_actions` is [batch, steps]; masked logits [batch, steps, actions] and the last state."""
        batch, steps = prev_actions.shape
        encoded = self.encoder(obs).reshape(batch, steps, -1)
        features = torch.cat([self.action_embedding(prev_actions), encoded], dim=-1)
        outputs = []
        for t in range(steps):
            state = self.cell(features[:, t], state)
            outputs.append(state[0])
        logits = self.head(torch.stack(outputs, dim=1)) / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        if isinstance(obs, dict) and self.mask_key in obs:
            mask = obs[self.mask_key].reshape(batch, steps, -1)
            logits = logits.masked_fill(mask == 0, torch.finfo(logits.dtype).min)
        return logits, state
