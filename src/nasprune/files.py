"""Files a resume or an export reads are written whole or not at all.

Each write goes to a temporary file in the destination's own directory, is fsynced, and is then
renamed over the destination with `os.replace` (atomic on POSIX within one filesystem), and the
directory is fsynced so that the rename itself survives a crash. A kill at any moment leaves
either the old file or the new one, never a truncated mix.

Why not Lightning's own checkpoint writer: it stages the file in the system temp directory
(fsspec's transaction, `tempfile.mkstemp()`), and when the run directory is on another filesystem
(a mounted volume, NFS, a tmpfs `/tmp`) the final move falls back to truncating the checkpoint and
copying into it in place — a kill during that copy leaves a zero-byte `last.ckpt`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# `mkstemp` and `mkdtemp` make files and folders for their owner only; ours get the usual modes
FILE_MODE, FOLDER_MODE = 0o666 & ~_umask(), 0o777 & ~_umask()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace `path` by `data` (text is UTF-8): temporary file beside it, fsync, `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A folder filled in a temporary place beside `path` and renamed to `path` once complete
    (a folder already there is replaced): `path` holds a whole set of files or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(staging, FOLDER_MODE)
    try:
        yield staging
        for file in staging.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(staging)
        if path.exists():
            retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, retired / path.name)
            os.replace(staging, path)
            shutil.rmtree(retired)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_directory(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's `TorchCheckpointIO`, saving through `atomic_write` (local paths only: a remote
    URL goes to Lightning's own writer, whose object stores are atomic per upload)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, str(path), storage_options)  # a URL
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, buffer.getvalue())
