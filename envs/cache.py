"""The evaluation cache: a design already evaluated in this run is answered from memory.

Keys are canonical design strings (`Design.to_json()`), so equivalent encodings (the width or
ratio a weightless op ignores) share one entry. The cache holds plain `info` dicts, the same
records `history.jsonl` stores, so it can be rebuilt from a run's history on resume and fed
the results of other env copies or worker processes (`remember`): nothing in it is shared
between processes by reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# per-evaluation facts that do not carry over to a cache hit (they describe the original run of it)
_NOT_CACHED_PREFIXES = ("seconds/",)
_NOT_CACHED_KEYS = frozenset({"cached", "episode", "update", "actions", "length", "seconds"})


class EvaluationCache:
    """Canonical design key → the `info` of its first evaluation in the run.

    Only deterministic outcomes are kept: successful evaluations and `invalid_design` failures.
    A transient failure (out of memory, a diverged or raising training) is tried again.
    """

    CACHEABLE_ERRORS = frozenset({"invalid_design"})

    def __init__(self, key_of: Callable[[Mapping[str, Any]], str | None]) -> None:
        """`key_of(info)` gives the canonical key of a recorded evaluation (None: not a design)."""
        self.key_of = key_of
        self.entries: dict[str, dict[str, Any]] = {}
        self.hits = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The cached `info` for `key`, marked `cached: True`, or None."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.hits += 1
        return {**entry, "cached": True}

    def add(self, key: str, info: Mapping[str, Any]) -> None:
        """Keep `info` for `key` unless it is a transient failure or the key is already known."""
        if key in self.entries or ("error_kind" in info and info["error_kind"] not in self.CACHEABLE_ERRORS):
            return
        self.entries[key] = {
            k: v for k, v in info.items() if k not in _NOT_CACHED_KEYS and not k.startswith(_NOT_CACHED_PREFIXES)
        }

    def remember(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add evaluations recorded elsewhere (history lines, other env copies); returns how many were new."""
        before = len(self.entries)
        for record in records:
            if record.get("cached"):
                continue
            key = self.key_of(record)
            if key is not None:
                self.add(key, record)
        return len(self.entries) - before


def timed_lookup(cache: EvaluationCache | None, key: str) -> dict[str, Any] | None:
    """`cache.lookup(key)` (None without a cache), a hit timed as its `seconds/evaluate`."""
    start = time.perf_counter()
    hit = cache.lookup(key) if cache is not None else None
    if hit is not None:
        hit["seconds/evaluate"] = time.perf_counter() - start
    return hit
