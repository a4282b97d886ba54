"""`history.jsonl` (every finished episode, durably) and `best.json`; their recovery on resume.

The history is the record a search must never lose. Each episode is appended as one JSON line the
moment it finishes (before the update that learns from it), flushed to the OS at once (so a
killed process loses nothing), and fsynced (so a crashed machine loses nothing) — per episode by
default, and in any case before every checkpoint: a checkpoint never counts an episode the history
could lose.

A resumed run (`--ckpt_path last`) continues the same file. The checkpoint stores how many episodes
it counts and a digest of their lines; lines beyond that count were written after it (their
update never made it into a checkpoint) and are dropped, while their evaluations are handed to the
env's evaluation cache, so the replayed episodes do not train those designs again. A history that
does not match the checkpoint, or a config that does not match the run, is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pytorch_lightning as pl

from nasprune.config import ConfigError
from nasprune.controller.episode import Episode
from nasprune.files import atomic_write
from nasprune.records import Record, best_of, digest, read_lines

log = logging.getLogger(__name__)


def _first_difference(old: Any, new: Any, key: str) -> tuple[str, Any, Any] | None:
    """The first config key (dotted) whose value differs between two JSON-like values (two
    paths of one existing file, say a relative and an absolute one, do not differ)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for sub in sorted(set(old) | set(new)):
            found = _first_difference(old.get(sub), new.get(sub), f"{key}.{sub}")
            if found is not None:
                return found
        return None
    if isinstance(old, str) and isinstance(new, str) and _same_file(old, new):
        return None
    return None if old == new else (key, old, new)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(os.path.expanduser(a), os.path.expanduser(b))
    except (OSError, ValueError):
        return False


def run_identity(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The settings that make two histories comparable: env, its arguments, episode seeds, batch, strategy."""
    data = trainer.datamodule  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
    hparams = getattr(data, "hparams", {})
    identity = {
        "data": {
            "env_id": hparams.get("env_id"),
            "env_kwargs": hparams.get("env_kwargs"),
            "max_episode_steps": hparams.get("max_episode_steps"),
            "episodes_per_update": hparams.get("episodes_per_update"),
            "seed": data.run_seed() if hasattr(data, "run_seed") else None,
        },
        "model": {"class_path": f"{type(pl_module).__module__}.{type(pl_module).__qualname__}"},
    }
    return json.loads(json.dumps(identity, sort_keys=True, default=repr))


class HistoryWriter(pl.Callback):
    """Appends each finished episode to `history.jsonl` and keeps `best.json` current.

    Files go to the run's log directory (`trainer.log_dir`, e.g. `lightning_logs/version_0`).
    Every episode is flushed to the OS at once and fsynced; `fsync_interval > 0` fsyncs at most
    that often (tabular envs, where an fsync per episode would dominate) — and always before a
    checkpoint is written and at the end.
    """

    def __init__(self, history_file: str = "history.jsonl", best_file: str = "best.json", fsync_interval: float = 0.0) -> None:
        if fsync_interval < 0:
            raise ConfigError("history.fsync_interval", f"must be >= 0 seconds, got {fsync_interval!r}")
        for key, name in (("history.history_file", history_file), ("history.best_file", best_file)):
            if not name or Path(name).name != name:
                raise ConfigError(key, f"must be a plain file name (it goes into the run directory), got {name!r}")
        self.history_file = history_file
        self.best_file = best_file
        self.fsync_interval = fsync_interval
        self.history_path: Path | None = None
        self.best_path: Path | None = None
        self.best: Record | None = None
        self.episodes = 0  # lines in the history file
        self._digest = digest([])
        self._identity: dict[str, Any] | None = None
        self._restored: dict[str, Any] | None = None
        self._handle: IO[str] | None = None
        self._last_fsync = float("-inf")
        self._unsynced = False

    # ---- wiring ----

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.history_path = run_dir / self.history_file
        self.best_path = run_dir / self.best_file
        self._identity = run_identity(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "digest": self._digest.hexdigest(), "identity": self._identity, "best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        assert self.history_path is not None and self.best_path is not None  # set in setup
        if self._restored is None:
            existing, _ = read_lines(self.history_path)
            if existing:
                raise ConfigError(
                    "ckpt_path",
                    f"{self.history_path} already holds {len(existing)} episodes of another run; resume it with "
                    "--ckpt_path last (or the path of its checkpoint), or start the new run in another directory",
                )
        else:
            self._resume(trainer, self._restored)
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.history_path.open("a", encoding="utf-8")

    def _resume(self, trainer: pl.Trainer, state: Mapping[str, Any]) -> None:
        """Check the run and the file against the checkpoint; drop the lines written after it."""
        assert self.history_path is not None and self.best_path is not None  # set in setup
        difference = _first_difference(state.get("identity"), self._identity, "")
        if difference is not None:
            key, old, new = difference
            raise ConfigError(
                key.lstrip("."),
                f"the run being resumed ({self.history_path.parent}) used {json.dumps(old)}, this config has {json.dumps(new)}; "
                "one history never mixes two searches: resume with the original setting or start a new run",
            )
        counted = int(state["episodes"])
        if counted and not self.history_path.is_file():
            raise ConfigError(
                "ckpt_path",
                f"{self.history_path} is missing, but the checkpoint counts {counted} episodes: it was deleted or moved; "
                "put it back to resume, or start a new run without --ckpt_path",
            )
        lines, clean = read_lines(self.history_path, replayed_after=counted)
        if len(lines) < counted:
            raise ConfigError(
                "ckpt_path",
                f"{self.history_path} holds {len(lines)} episodes, but the checkpoint counts {counted}: it was truncated "
                "(or replaced) after the checkpoint; restore it from a copy to resume, or start a new run without --ckpt_path",
            )
        kept = lines[:counted]
        if digest(kept).hexdigest() != state["digest"]:
            raise ConfigError("ckpt_path", f"{self.history_path}: its first {counted} episodes are not the ones the checkpoint counted (another run's history?)")
        records = [json.loads(line) for line in lines]
        if len(lines) > counted or not clean:
            if len(lines) > counted:
                log.info("resuming at episode %d: %d later episodes were never counted by a checkpoint; they are replayed (their evaluations are cached)", counted, len(lines) - counted)
            self._rewrite(kept)
        self.episodes = counted
        self._digest = digest(kept)
        self.best = best_of(records[:counted])
        if self.best is not None:
            self._write_best(self.best)
        elif self.best_path.exists():
            self.best_path.unlink()
        remember = getattr(trainer.datamodule, "remember", None)  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
        if remember is not None:
            remember(records)

    def _rewrite(self, lines: list[str]) -> None:
        """Replace the history by `lines` atomically."""
        assert self.history_path is not None  # set in setup
        atomic_write(self.history_path, "".join(line + "\n" for line in lines))

    # ---- writing ----

    def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
        """Append the episode the moment it ends, before the update that learns from it."""
        if trainer.global_rank != 0:
            return
        assert self._handle is not None  # opened in on_fit_start
        record = episode.record
        line = json.dumps(record)
        self._handle.write(line + "\n")
        self._handle.flush()
        self._digest.update(line.encode("utf-8") + b"\n")
        self.episodes += 1
        self._unsynced = True
        if time.monotonic() - self._last_fsync >= self.fsync_interval:
            self._fsync()
        if self.best is None or record["reward"] > self.best["reward"]:
            self.best = record
            self._write_best(record)

    def _write_best(self, record: Record) -> None:
        assert self.best_path is not None  # set in setup
        atomic_write(self.best_path, json.dumps(record, indent=2) + "\n")

    def _fsync(self) -> None:
        if self._handle is not None and self._unsynced:
            os.fsync(self._handle.fileno())
            self._unsynced = False
            self._last_fsync = time.monotonic()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Runs before the checkpoint is written: everything it counts is on disk first."""
        self._fsync()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fsync()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._handle is not None:
            self._fsync()
            self._handle.close()
            self._handle = None


