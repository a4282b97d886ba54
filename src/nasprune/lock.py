"""One search per run directory: `RUN_DIR/run.lock`, held while the search runs.

The lock is an exclusive `flock` on the file, which the kernel drops when its holder exits —
however it exits, SIGKILL included — so a killed run never leaves a stale lock behind. The file
names the holder (pid, host, start time) for the refusal message. A second search in the same
directory (two new runs that picked the same `version_N` at once, or two resumes of one run) is
refused with one line before it writes anything there.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from nasprune.config import ConfigError

LOCK_FILE = "run.lock"


class RunLock:
    """An exclusive hold on one run directory; `release()` (or the process's exit) gives it up."""

    def __init__(self, run_dir: Path, handle: IO[str]) -> None:
        self.run_dir = run_dir
        self._handle: IO[str] | None = handle

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike, key: str = "trainer.default_root_dir") -> RunLock:
        """Hold `run_dir` or raise `ConfigError` naming the search that holds it."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                key,
                f"{run_dir} is in use by another search ({holder}); wait for it to end or stop it, "
                "or give this one another trainer.default_root_dir",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
        handle.flush()
        return cls(run_dir, handle)

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
