"""Both `pip install -e .` and `pip install .` must give the namespaced packages and their configs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nasprune.envs
from nasprune.config import packaged_configs, resolve_config_path


@pytest.mark.slow
def test_wheel_holds_only_the_nasprune_namespace_and_its_configs(repo: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(repo)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("nasprune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"nasprune"}
    for module in ("controller/reinforce.py", "child/prune.py", "envs/nasprune_env.py", "callbacks/history.py", "cli.py"):
        assert f"nasprune/{module}" in names
    assert "nasprune/configs/digits.yaml" in names and "nasprune/configs/cartpole.yaml" in names
    assert not any(name.startswith("nasprune/tests") for name in names)

    # the installed layout (not the editable one) imports and finds its packaged configs
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import nasprune.child, nasprune.controller, nasprune.envs, nasprune.callbacks, gymnasium;"
        "from nasprune.config import packaged_configs;"
        "print(nasprune.envs.__file__); print(packaged_configs());"
        "print(gymnasium.spec('nasprune/NasPrune-v0').id)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    envs_file, configs_dir, env_id = out.stdout.split()
    assert Path(envs_file).is_relative_to(site) and Path(configs_dir).is_relative_to(site)
    assert env_id == "nasprune/NasPrune-v0"
    printed = subprocess.run(
        [sys.executable, "-m", "nasprune", "fit", "-c", "configs/digits.yaml", "--print_config"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )
    assert "env_id: nasprune/NasPrune-v0" in printed.stdout


def test_configs_are_found_from_the_package() -> None:
    assert (packaged_configs() / "digits.yaml").is_file()
    assert Path(resolve_config_path("digits")).name == "digits.yaml"
    assert Path(nasprune.envs.__file__).parent.name == "envs"
