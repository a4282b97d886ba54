"""Every ```python block of README.md runs as written, where the README's default search has just run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def checkout(tiny_search_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as a checkout after `make search`: `runs/digits` is the tiny search's
    run root (its `lightning_logs/version_0`), `configs` the repository's, `../shared` the data."""
    where = tmp_path_factory.mktemp("readme") / "nasprune"
    (where / "runs").mkdir(parents=True)
    (where / "runs" / "digits").symlink_to(tiny_search_run.parent.parent, target_is_directory=True)
    (where / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    shared = (REPO.parent / "shared").resolve()
    if shared.is_dir():
        (where.parent / "shared").symlink_to(shared, target_is_directory=True)
    return where


def test_the_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python block (the block test would pass by running nothing)"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_readme_python_block_runs_as_written(checkout: Path, index: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=checkout, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README python block {index + 1} failed:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"
