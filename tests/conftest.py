from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids, as the CLI does)

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")

REPO = Path(__file__).resolve().parents[1]

# The start of a script for a fresh interpreter that refuses to import nasprune: exported files must be enough.
WITHOUT_NASPRUNE = """
import sys

class NoNasprune:
    def find_spec(self, name, path=None, target=None):
        if name == "nasprune" or name.startswith("nasprune."):
            raise ImportError("nasprune must not be imported here")
        return None

sys.meta_path.insert(0, NoNasprune())
"""


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One local Ray for the test session (a second `ray.init` in one process timed out waiting for
    its GCS server), with 3 (logical) CPUs: one per worker of the 3-worker tests; its session files
    and auth token in a temporary HOME."""
    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 108 bytes
    saved = {key: os.environ.get(key) for key in ("HOME", "RAY_TMPDIR")}
    os.environ.update(HOME=temp, RAY_TMPDIR=temp)
    import ray

    ray.init(num_cpus=3, _temp_dir=temp, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "tests")}})
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def repo() -> Path:
    return REPO


# A NasPrune env small enough to evaluate a child in well under a second.
TINY_ENV_KWARGS = {
    "search_space": {
        "num_layers": 2,
        "ops": ["conv3x3", "sepconv3x3", "maxpool3x3", "identity"],
        "widths": [4, 8],
        "prune_ratios": [0.0, 0.5],
        "stem_width": 8,
    },
    "training": {"epochs": 1, "finetune_epochs": 1},
}


@pytest.fixture
def tiny_env_kwargs() -> dict:
    return copy.deepcopy(TINY_ENV_KWARGS)


@pytest.fixture(scope="session")
def tiny_search_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny digits search through the real CLI (3 updates of 1 episode, tables and figures every 2 updates,
    the best design exported with a 2+1-epoch final training), shared by the callback, export and
    report tests. Returns its run directory."""
    import yaml

    from nasprune.cli import run

    root = tmp_path_factory.mktemp("tiny_search")
    config = yaml.safe_load((REPO / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(copy.deepcopy(TINY_ENV_KWARGS))
    config["export"]["final_training"] = {"epochs": 2, "finetune_epochs": 1}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    run(
        [
            "fit",
            "-c",
            str(path),
            "--trainer.max_steps=3",
            "--data.episodes_per_update=1",
            "--top_k.every_n_updates=2",
            "--pareto.every_n_updates=2",
            f"--trainer.default_root_dir={root}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    return root / "lightning_logs" / "version_0"
