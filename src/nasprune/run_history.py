"""The run's own account of its finished episodes, and how a resumed run takes its history file back.

The episode data module owns one `RunHistory` (`EpisodeDataModule.history`). Every finished
episode is added to it the moment it ends, before any callback hears of it, so it is the one
owner of the run's best so far (`best`, and `best_evaluated` for the network to export) and of
how many episodes the history counts. It is part of the data module's checkpoint.

A resumed run (`--ckpt_path last`) continues the same history file. The checkpoint stores how
many episodes it counts and a digest of their lines; lines beyond that count were written after it
(their update never made it into a checkpoint) and are dropped, while their evaluations go back to
the env's evaluation cache, so the replayed episodes do not train those designs again. A history
that does not match the checkpoint, or a config that does not match the run, is refused.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasprune.config import ConfigError
from nasprune.files import atomic_write
from nasprune.records import Record, digest, is_evaluated, read_lines

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from nasprune.controller.episode import Episode

log = logging.getLogger(__name__)


def run_identity(data: pl.LightningDataModule, strategy: pl.LightningModule) -> dict[str, Any]:
    """The settings that make two histories comparable: env, its arguments, episode seeds, batch, strategy."""
    hparams = getattr(data, "hparams", {})
    identity = {
        "data": {
            "env_id": hparams.get("env_id"),
            "env_kwargs": hparams.get("env_kwargs"),
            "max_episode_steps": hparams.get("max_episode_steps"),
            "episodes_per_update": hparams.get("episodes_per_update"),
            "seed": data.run_seed() if hasattr(data, "run_seed") else None,
        },
        "model": {"class_path": f"{type(strategy).__module__}.{type(strategy).__qualname__}"},
    }
    return json.loads(json.dumps(identity, sort_keys=True, default=repr))


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


def history_of(trainer: pl.Trainer) -> RunHistory:
    """The run's history: the one its episode data module keeps."""
    history = getattr(trainer.datamodule, "history", None)  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
    if not isinstance(history, RunHistory):
        raise TypeError(f"a search's data module keeps the run's history (EpisodeDataModule.history); {type(trainer.datamodule).__name__} has none")  # type: ignore[attr-defined]  # as above
    return history


def best_reward(trainer: pl.Trainer) -> float:
    """The run's best episode reward so far (`-inf` before its first episode)."""
    best = history_of(trainer).best
    return float("-inf") if best is None else float(best["reward"])


class RunHistory:
    """How many episodes the run has finished, their digest, and its best so far.

    `path` is the run's `history.jsonl` when one is written (`HistoryWriter` says where); `open`
    then checks it against the checkpoint being resumed before the first episode is played.
    """

    def __init__(self) -> None:
        self.path: Path | None = None
        self.episodes = 0  # finished episodes: the lines of the history file
        self.best: Record | None = None  # the highest reward so far (the first of equals)
        self.best_evaluated: Record | None = None  # the same among episodes that evaluated a network
        self.identity: dict[str, Any] | None = None
        self._digest = digest([])
        self._restored: dict[str, Any] | None = None
        self._opened = False

    def add(self, episode: Episode) -> None:
        """Count a finished episode (its `line` is the one the history file gets)."""
        record = episode.record
        self._digest.update(episode.line.encode("utf-8") + b"\n")
        self.episodes += 1
        if self.best is None or record["reward"] > self.best["reward"]:
            self.best = record
        if is_evaluated(record) and (self.best_evaluated is None or record["reward"] > self.best_evaluated["reward"]):
            self.best_evaluated = record

    def attach(self, path: Path) -> None:
        """The file this fit's episodes are written to; `open` checks it before the first one."""
        self.path = path
        self._opened = False

    def state_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "digest": self._digest.hexdigest(),
            "identity": self.identity,
            "best": self.best,
            "best_evaluated": self.best_evaluated,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)
        self.episodes = int(state["episodes"])
        self.best = state["best"]
        self.best_evaluated = state["best_evaluated"]

    def open(self, identity: dict[str, Any]) -> list[Record]:
        """Take the history file back, once per fit: a new run refuses a file that holds episodes;
        a resumed one checks the file and this config against the checkpoint and drops the lines
        written after it. Returns the file's records (evaluations the env's cache can take back)."""
        if self._opened:
            return []
        self._opened = True
        self.identity = identity
        restored, self._restored = self._restored, None
        if restored is not None:
            self._check_identity(restored.get("identity"))
        if self.path is None:
            return []
        if restored is None:
            self._refuse_existing(self.path)
            return []
        return self._resume(self.path, int(restored["episodes"]), restored["digest"])

    def _check_identity(self, restored: Any) -> None:
        difference = _first_difference(restored, self.identity, "")
        if difference is None:
            return
        key, old, new = difference
        where = f" ({self.path.parent})" if self.path is not None else ""
        raise ConfigError(
            key.lstrip("."),
            f"the run being resumed{where} used {json.dumps(old)}, this config has {json.dumps(new)}; "
            "one history never mixes two searches: resume with the original setting or start a new run",
        )

    @staticmethod
    def _refuse_existing(path: Path) -> None:
        existing, _ = read_lines(path)
        if existing:
            raise ConfigError(
                "ckpt_path",
                f"{path} already holds {len(existing)} episodes of another run; resume it with "
                "--ckpt_path last (or the path of its checkpoint), or start the new run in another directory",
            )

    def _resume(self, path: Path, counted: int, counted_digest: str) -> list[Record]:
        """Check the file against the checkpoint; drop the lines written after it."""
        if counted and not path.is_file():
            raise ConfigError(
                "ckpt_path",
                f"{path} is missing, but the checkpoint counts {counted} episodes: it was deleted or moved; "
                "put it back to resume, or start a new run without --ckpt_path",
            )
        lines, clean = read_lines(path, replayed_after=counted)
        if len(lines) < counted:
            raise ConfigError(
                "ckpt_path",
                f"{path} holds {len(lines)} episodes, but the checkpoint counts {counted}: it was truncated "
                "(or replaced) after the checkpoint; restore it from a copy to resume, or start a new run without --ckpt_path",
            )
        kept = lines[:counted]
        self._digest = digest(kept)
        if self._digest.hexdigest() != counted_digest:
            raise ConfigError("ckpt_path", f"{path}: its first {counted} episodes are not the ones the checkpoint counted (another run's history?)")
        if len(lines) > counted:
            log.info("resuming at episode %d: %d later episodes were never counted by a checkpoint; they are replayed (their evaluations are cached)", counted, len(lines) - counted)
        if len(lines) > counted or not clean:
            atomic_write(path, "".join(line + "\n" for line in kept))
        return [json.loads(line) for line in lines]
