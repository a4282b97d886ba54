"""An episode's record: the one line of `history.jsonl` that the history, the exporter and the report share.

A record is the env's final `info` (design, accuracy, FLOPs, reward parts, …: whatever the env
reports) plus the episode's own fields (`episode`, `update`, `reward`, `length`, `actions`,
`seconds`, `worker`: see `episode_record`). It is built once per episode (`Episode.record`) and
read back with `read_history`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nasprune.controller.episode import Episode

log = logging.getLogger(__name__)

# A history line: JSON values only, the env's info keys and the episode's own fields.
Record = dict[str, Any]


class HistoryError(ValueError):
    """A history file that cannot be read (a corrupt line other than a torn last one)."""


def jsonable(value: Any) -> Any:
    """`value` with numpy arrays and scalars turned into JSON's lists and numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def episode_record(episode: Episode) -> Record:
    """One history line: the env's final `info` plus the episode's index, update, return, actions and time."""
    return {
        **jsonable(episode.info),
        "episode": episode.index,
        "update": episode.update,
        "reward": episode.total_reward,
        "length": len(episode),
        "actions": [int(a) for a in episode.actions],
        "seconds": episode.seconds,
        "worker": episode.worker,
        "staleness": episode.staleness,
    }


def is_evaluated(record: Record) -> bool:
    """Whether the episode evaluated a network without failing (a NasPrune design or PruneModel ratios)."""
    return ("design" in record or "ratios" in record) and "error" not in record


def best_of(records: Sequence[Record]) -> Record | None:
    """The highest-reward record (the first of equals), `None` for none."""
    return max(records, key=lambda r: r["reward"]) if records else None


def read_lines(path: Path, replayed_after: int | None = None) -> tuple[list[str], bool]:
    """The complete JSON lines of `path` and whether the file ended cleanly.

    A torn last line (the process was killed while appending it) is dropped with a warning; a
    line that is not JSON anywhere else is corruption, reported as `HistoryError` naming it —
    except past the first `replayed_after` lines (the part a resume drops and plays again), where
    the corrupt line and all after it are dropped with a warning.
    """
    if not path.exists():
        return [], True
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    tail = lines.pop()  # "" when the file ends with a newline, else the unterminated last line
    clean = not tail
    if tail:
        try:
            if isinstance(json.loads(tail), dict):
                lines.append(tail)  # complete: only its newline was lost
        except json.JSONDecodeError:
            log.warning("%s: skipping a torn last line (%d bytes; the run was stopped while writing it)", path, len(tail.encode("utf-8")))
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            problem = None if isinstance(record, dict) else "is not a JSON object"
        except json.JSONDecodeError as err:
            problem = f"is not JSON ({err.msg} at column {err.colno})"
        if problem is None:
            continue
        if replayed_after is not None and number > replayed_after:
            log.warning("%s: line %d %s; it and the %d lines after it are dropped and replayed", path, number, problem, len(lines) - number)
            return lines[: number - 1], False
        raise HistoryError(f"{path}: line {number} {problem}")
    return lines, clean


def read_history(path: str | os.PathLike) -> list[Record]:
    """The records of a `history.jsonl`, in order. Never fails on a torn last line (it is skipped
    with a warning); raises `HistoryError` naming the line for corruption anywhere else."""
    return [json.loads(line) for line in read_lines(Path(path))[0]]


def digest(lines: Sequence[str]) -> hashlib._Hash:
    """The running SHA-256 of history lines (newline-terminated), extended as lines are appended."""
    running = hashlib.sha256()
    for line in lines:
        running.update(line.encode("utf-8") + b"\n")
    return running
