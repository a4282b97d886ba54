"""The best designs so far as a table: TensorBoard's text tab (markdown), refreshed every N updates."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pytorch_lightning as pl

from nasprune.callbacks.publish import PeriodicPublisher, log_text
from nasprune.config import ConfigError

TOP_K_COLUMNS = ["rank", "reward", "accuracy", "FLOPs", "params", "design", "episode", "times seen"]


def design_label(record: dict[str, Any], max_length: int = 120) -> str:
    """A readable one-line design: the NasPrune design string, a NAS-Bench-201 arch, or the actions
    (cut to `max_length` characters: a CartPole episode is hundreds of them)."""
    for key in ("design_str", "arch"):
        if isinstance(record.get(key), str):
            return record[key]
    actions = " ".join(str(a) for a in record.get("actions", []))
    return actions if len(actions) <= max_length else actions[: max_length - 1] + "…"


def _number(value: Any, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, spec)
    return "–"


def top_k_rows(records: Iterable[dict[str, Any]], k: int) -> list[list[str]]:
    """The `k` best distinct designs by reward, each at its best evaluation; failed episodes left out.

    A converging controller evaluates the same design many times, so designs are ranked once
    each, and the table says how often each was seen.
    """
    best: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for record in records:
        if "error" in record:
            continue
        label = design_label(record)
        seen[label] = seen.get(label, 0) + 1
        if label not in best or record["reward"] > best[label]["reward"]:
            best[label] = record
    ranked = sorted(best.items(), key=lambda item: item[1]["reward"], reverse=True)[:k]
    return [
        [
            str(rank),
            _number(record["reward"], ".4f"),
            _number(record.get("accuracy"), ".4f"),
            _number(record.get("flops"), ",.0f"),
            _number(record.get("params"), ",.0f"),
            label,
            str(record.get("episode", "–")),
            str(seen[label]),
        ]
        for rank, (label, record) in enumerate(ranked, start=1)
    ]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (TensorBoard's text plugin renders it)."""
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


class TopKTable(PeriodicPublisher):
    """Logs `search/top_k`: rank, reward, accuracy, FLOPs, params and design of the `k` best designs.

    Refreshed every `every_n_updates` controller updates and once more at the end of training,
    at step = the update index.
    """

    def __init__(self, k: int = 10, every_n_updates: int = 10, tag: str = "search/top_k") -> None:
        super().__init__(every_n_updates, "top_k")
        if k < 1:
            raise ConfigError("top_k.k", f"must be a positive integer, got {k!r}")
        self.k = k
        self.tag = tag

    def _publish(self, trainer: pl.Trainer, update: int) -> None:
        rows = top_k_rows(self.records, self.k)
        markdown = markdown_table(TOP_K_COLUMNS, rows)
        for logger in trainer.loggers:
            log_text(logger, self.tag, markdown, rows, TOP_K_COLUMNS, update)
        self._logged_update = update
