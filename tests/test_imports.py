"""Every public module imports on its own, and the controller stays free of the NAS env stack.

Each import runs in a fresh interpreter: inside one test process, an earlier import (the CLI's,
a fixture's) would hide an import cycle or a missing import of the module under test.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import nasprune

ROOMS = ("nasprune.callbacks", "nasprune.child", "nasprune.controller", "nasprune.envs")
# modules of optional extras that are not installed here
OPTIONAL = {"nasprune.controller.ray_backend": "ray"}


def public_modules() -> list[str]:
    """`nasprune` and every module under it whose name has no leading underscore (pkgutil's walk)."""
    names = ["nasprune", *(f"nasprune.{m.name}" for m in pkgutil.iter_modules(nasprune.__path__) if not m.name.startswith("_"))]
    for room in ROOMS:
        spec = importlib.util.find_spec(room)
        assert spec is not None and spec.submodule_search_locations, room
        names += [room, *(f"{room}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations) if not m.name.startswith("_"))]
    return sorted(set(names) - {name for name, extra in OPTIONAL.items() if importlib.util.find_spec(extra) is None})


def import_alone(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)


def test_the_walk_finds_every_room() -> None:
    modules = public_modules()
    assert {"nasprune.export", "nasprune.records", "nasprune.controller.rollout", "nasprune.callbacks.export", "nasprune.envs.cache"} <= set(modules)
    assert len(modules) > 40


@pytest.mark.slow
def test_every_public_module_imports_in_a_fresh_interpreter() -> None:
    modules = public_modules()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(modules, pool.map(import_alone, modules)))
    failed = {module: result.stderr.strip().splitlines()[-1] for module, result in results.items() if result.returncode != 0}
    assert failed == {}


def test_the_documented_export_api_imports_first() -> None:
    result = subprocess.run([sys.executable, "-c", "from nasprune.export import load_checkpoint"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def loaded_after(imports: str) -> list[str]:
    """Which modules of the NAS env stack a fresh interpreter holds after `imports`."""
    stack = ("torch_pruning", "torchvision", "sklearn", "nasprune.envs", "nasprune.child")
    probe = f"import sys; {imports}; print(' '.join(m for m in {stack!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True).stdout.split()


@pytest.mark.parametrize("module", ["nasprune.controller.policy", "nasprune.controller"])
def test_the_controller_does_not_load_the_nas_env_stack(module: str) -> None:
    # torchvision comes with Lightning itself (torchmetrics imports it when installed): the
    # controller adds nothing to what `import pytorch_lightning` loads (a module that needs no
    # Lightning may load less)
    loaded = loaded_after(f"import {module}")
    assert set(loaded) <= set(loaded_after("import pytorch_lightning, gymnasium"))
    assert not {"torch_pruning", "sklearn", "nasprune.envs", "nasprune.child"} & set(loaded)


def test_importing_only_nasprune_envs_registers_its_ids() -> None:
    probe = (
        "import gymnasium, nasprune.envs;"
        "print(gymnasium.spec('nasprune/NasPrune-v0').entry_point, gymnasium.spec('nasprune/NasBench201-v0').entry_point)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.split() == ["nasprune.envs.nasprune_env:NasPruneEnv", "nasprune.envs.nasbench201_env:NasBench201Env"]
