"""NAS-Bench-201 as a Gymnasium env: six categorical decisions, a table lookup at the end.

Every one of the 15,625 cells of NAS-Bench-201 (Dong & Yang 2020) was trained, so a search on
its table costs microseconds per episode instead of a child training run. That makes it the
place to measure how well a search strategy searches (thousands of episodes, many seeds).

The cell is a DAG of 4 nodes; each of its 6 edges (node j → node i, j < i) carries one of 5
operations. The arch string lists them node by node, e.g.
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`;
the env decides the edges in that order (1←0, 2←0, 2←1, 3←0, 3←1, 3←2).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nasprune.config import ConfigError, PositiveFloat
from nasprune.decisions import DecisionCopies

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NUM_NODES) for j in range(i))  # (to, from)
LATENCY_WEIGHTS = {"soft": -0.07, "hard": -1.0}


_OP_INDEX = {op: i for i, op in enumerate(OPS)}
_ARCH_PATTERN = re.compile(r"\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|")


def arch_to_actions(arch: str) -> tuple[int, ...]:
    """`|op~0|+|op~0|op~1|+|…|` → one op index per edge, in `EDGES` order; `ValueError` if malformed."""
    match = _ARCH_PATTERN.fullmatch(arch.strip())
    if match is not None and all(op in _OP_INDEX for op in match.groups()):
        return tuple(_OP_INDEX[op] for op in match.groups())
    nodes = arch.strip().split("+")
    if len(nodes) != NUM_NODES - 1:
        raise ValueError(f"expected {NUM_NODES - 1} node groups separated by '+', got {len(nodes)}")
    actions = []
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise ValueError(f"node group {node!r} must start and end with '|'")
        edges = node[1:-1].split("|")
        if len(edges) != i:
            raise ValueError(f"node {i} needs {i} edges, got {len(edges)} in {node!r}")
        for j, edge in enumerate(edges):
            op, sep, source = edge.partition("~")
            if not sep or source != str(j):
                raise ValueError(f"edge {edge!r} of node {i} must read 'op~{j}'")
            if op not in OPS:
                raise ValueError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")
            actions.append(OPS.index(op))
    return tuple(actions)


def actions_to_arch(actions: Sequence[int]) -> str:
    """The inverse of `arch_to_actions`."""
    ops = iter(OPS[a] for a in actions)
    return "+".join("|" + "|".join(f"{next(ops)}~{j}" for j in range(i)) + "|" for i in range(1, NUM_NODES))


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class NasBench201Table:
    """The rows of a NAS-Bench-201 CSV, keyed by their decisions, plus the masks the env offers.

    Any subset of the 15,625 cells works: `masks[prefix]` allows exactly the next ops that lead
    to a row of the table, so every episode ends on a row.
    """

    path: str
    columns: tuple[str, ...]
    rows: dict[tuple[int, ...], dict[str, float | str]]
    masks: dict[tuple[int, ...], np.ndarray] = field(repr=False)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        arch_column: str = "arch",
        numeric_columns: Sequence[str] = (),
        key: str = "table",
        unique_columns: Sequence[str] = (),
    ) -> NasBench201Table:
        """Read and validate the CSV; every problem is one `ConfigError` naming the path (row, column).

        A UTF-8 byte-order mark (spreadsheets write one) is skipped; a value repeated in one of
        `unique_columns` (the official index) is refused, as a repeated arch is."""
        resolved = Path(path).expanduser()
        where = str(path) if resolved.is_absolute() else f"{path} (resolved: {resolved.resolve()})"
        try:
            with resolved.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                records = [(reader.line_num, record) for record in reader if record]  # blank lines skipped
        except FileNotFoundError:
            raise ConfigError(key, f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise ConfigError(key, f"{where}: cannot read the table ({err})") from None
        if not header:
            raise ConfigError(key, f"{where}: the file is empty; expected a CSV header with columns {arch_column!r}, …")
        header = [name.strip() for name in header]
        for column in (arch_column, *numeric_columns, *unique_columns):
            if column not in header:
                raise ConfigError(key, f"{where}: no column {column!r}; the table has: {', '.join(header)}")
        if not records:
            raise ConfigError(key, f"{where}: the table has a header but no rows")
        arch_at = header.index(arch_column)
        numeric_at = [(name, header.index(name)) for name in numeric_columns]
        rows: dict[tuple[int, ...], dict[str, float | str]] = {}
        first_seen: dict[tuple[int, ...], int] = {}
        seen_values: dict[str, dict[str, int]] = {name: {} for name in unique_columns}
        for number, (line, record) in enumerate(records, start=1):
            here = f"{where}: row {number} (line {line})"
            if len(record) != len(header):
                raise ConfigError(key, f"{here}: {len(record)} fields, the header has {len(header)}")
            try:
                actions = arch_to_actions(record[arch_at])
            except ValueError as err:
                raise ConfigError(key, f"{here}, column {arch_column!r}: {record[arch_at]!r} is not a NAS-Bench-201 arch ({err})") from None
            if actions in first_seen:
                raise ConfigError(key, f"{here}, column {arch_column!r}: arch {record[arch_at]!r} repeats row {first_seen[actions]}")
            row = {name: _number(value) for name, value in zip(header, record)}
            row[arch_column] = record[arch_at]
            for name, at in numeric_at:
                value = row[name]
                if not isinstance(value, float) or not math.isfinite(value):
                    raise ConfigError(key, f"{here}, column {name!r}: {record[at]!r} is not a finite number")
            for name, seen in seen_values.items():
                value = record[header.index(name)]
                if value in seen:
                    raise ConfigError(key, f"{here}, column {name!r}: {value!r} repeats row {seen[value]}")
                seen[value] = number
            first_seen[actions] = number
            rows[actions] = row
        return cls(str(path), tuple(header), rows, _prefix_masks(rows))


def _prefix_masks(rows: dict[tuple[int, ...], Any]) -> dict[tuple[int, ...], np.ndarray]:
    """For every prefix of a decision sequence in `rows`: the int8 mask of ops that continue it."""
    masks: dict[tuple[int, ...], np.ndarray] = {}
    for actions in rows:
        for t in range(len(EDGES)):
            prefix = actions[:t]
            mask = masks.get(prefix)
            if mask is None:
                mask = masks[prefix] = np.zeros(len(OPS), dtype=np.int8)
            mask[actions[t]] = 1
    for mask in masks.values():
        mask.flags.writeable = False  # shared by every env made from the table (observations get copies)
    return masks


_TABLES: dict[tuple[str, float, int, str, tuple[str, ...], tuple[str, ...]], NasBench201Table] = {}


def load_table(
    path: str | os.PathLike, arch_column: str = "arch", numeric_columns: Sequence[str] = (), unique_columns: Sequence[str] = ()
) -> NasBench201Table:
    """`NasBench201Table.load`, cached per file version, so many envs (or runs) read it once."""
    resolved = Path(path).expanduser()
    load = partial(NasBench201Table.load, path, arch_column, numeric_columns, unique_columns=unique_columns)
    try:
        stat = resolved.stat()
        cache_key = (str(resolved.resolve()), stat.st_mtime, stat.st_size, arch_column, tuple(numeric_columns), tuple(unique_columns))
    except OSError:
        return load()  # raises the ConfigError
    if cache_key not in _TABLES:
        _TABLES[cache_key] = load()
    return _TABLES[cache_key]


class NasBench201Env(DecisionCopies, gym.Env):
    """Pick one op per cell edge (6 steps, 5 ops); the final step returns the table's reward.

    Observation (as in `NasPruneEnv`): `step`, `prev_action` (5 = start token) and an int8
    `action_mask` of the ops that lead to a row of the table (all ones for the full table); an
    action outside it ends the episode with `failure_reward`.
    Rewards are 0 before the last step; the last step's `info` holds `arch`, `index`, every
    column of the row, and `reward`. The reward is `reward_column`, optionally multiplied by the
    MnasNet latency factor `(latency / latency_target) ** w`, where `w` is `latency_weight`
    (default −0.07) for a `soft` constraint, and for a `hard` one 0 within the target and
    `latency_weight` (default −1) over it. It offers `decision_env()` (`nasprune.decisions`): an
    update's cells are sampled first, then looked up (by parallel workers, when there are any).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        table: str | os.PathLike | None = None,
        reward_column: str = "valid_acc_12ep",
        arch_column: str = "arch",
        index_column: str | None = "index",
        latency_column: str | None = None,
        latency_target: PositiveFloat | None = None,
        latency_constraint: Literal["soft", "hard"] = "soft",
        latency_weight: float | None = None,
        failure_reward: float = 0.0,
    ) -> None:
        """
        Args:
            table: path of the CSV (one row per cell: arch string, index, metrics).
            reward_column: numeric column rewarded (NAS-Bench-201's search signal: `valid_acc_12ep`).
            arch_column: column of the arch strings.
            index_column: column of the official index, reported in `info["index"]`; `None`: the row number.
            latency_column: numeric column of latencies (e.g. `latency_ms_pixel3`); `None`: no latency term.
            latency_target: the latency target T, in the column's unit.
            latency_constraint: `soft` (w applies everywhere) or `hard` (w applies only over T).
            latency_weight: the exponent w (defaults: −0.07 soft, −1 hard).
            failure_reward: the reward of an action outside the mask (it ends the episode).
        """
        super().__init__()
        if table is None:
            raise ConfigError("table", "the path of a NAS-Bench-201 CSV is required (e.g. ../shared/data/nasbench201/nb201_cifar10.csv)")
        if latency_column is not None and latency_target is None:
            raise ConfigError("latency_target", "a positive target is required with latency_column, got None")
        numeric = [reward_column] + [c for c in (latency_column, index_column) if c is not None]
        self.table = load_table(table, arch_column, numeric, (index_column,) if index_column is not None else ())
        self.reward_column = reward_column
        self.arch_column = arch_column
        self.index_column = index_column
        self.latency_column = latency_column
        self.latency_target = latency_target
        self.latency_constraint = latency_constraint
        self.latency_weight = LATENCY_WEIGHTS[latency_constraint] if latency_weight is None else float(latency_weight)
        self.failure_reward = float(failure_reward)
        self._row_numbers = {actions: number for number, actions in enumerate(self.table.rows)}

        self.action_space = spaces.Discrete(len(OPS))
        self.observation_space = spaces.Dict(
            {
                "step": spaces.Discrete(len(EDGES) + 1),
                "prev_action": spaces.Discrete(len(OPS) + 1),
                "action_mask": spaces.MultiBinary(len(OPS)),
            }
        )
        self._done_mask = np.zeros(len(OPS), dtype=np.int8)
        self._actions: list[int] = []
        self._failed = False

    def _mask(self) -> np.ndarray:
        """The actions allowed next (shared with the table: copy before handing it out)."""
        return self._done_mask if self._failed else self.table.masks.get(tuple(self._actions), self._done_mask)

    def _observation(self) -> dict[str, Any]:
        prev = self._actions[-1] if self._actions else len(OPS)
        return {"step": len(self._actions), "prev_action": prev, "action_mask": self._mask().copy()}

    def reward_of(self, row: dict[str, Any]) -> tuple[float, dict[str, float]]:
        """The reward of a table row and its parts (`reward/accuracy`, `reward/latency_factor`)."""
        accuracy = float(row[self.reward_column])
        if self.latency_column is None:
            return accuracy, {}
        assert self.latency_target is not None  # required with latency_column (checked in __init__)
        ratio = float(row[self.latency_column]) / self.latency_target
        weight = self.latency_weight if (self.latency_constraint == "soft" or ratio > 1.0) else 0.0
        factor = ratio**weight
        return accuracy * factor, {"reward/accuracy": accuracy, "reward/latency_factor": factor}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._actions = []
        self._failed = False
        return self._observation(), {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._failed or len(self._actions) >= len(EDGES):
            raise RuntimeError("step() called on a finished episode; call reset() first")
        action = int(action)
        if not 0 <= action < len(OPS) or not self._mask()[action]:
            info: dict[str, Any] = {"error": f"action {action} is masked out at step {len(self._actions)}", "error_kind": "invalid_action"}
            self._failed = True
            return self._observation(), self.failure_reward, True, False, info
        self._actions.append(action)
        if len(self._actions) < len(EDGES):
            return self._observation(), 0.0, False, False, {}
        if self.deciding:
            reward, info = self.pending(None)
            return self._observation(), reward, True, False, info
        actions = tuple(self._actions)
        row = self.table.rows[actions]
        reward, parts = self.reward_of(row)
        index = row[self.index_column] if self.index_column is not None else self._row_numbers[actions]
        info = {**row, "arch": row[self.arch_column], "index": int(index), **parts, "reward": reward}
        return self._observation(), reward, True, False, info
