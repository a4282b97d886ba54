"""Static type checkers resolve `nasprune.*` (the rooms mapped under the package) and read its hints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nasprune

# Third-party packages mypy need not analyse to resolve nasprune's own names (keeps the check fast)
SKIPPED = "torch.*,torchvision.*,pytorch_lightning.*,lightning_fabric.*,lightning_utilities.*,gymnasium.*,numpy.*,jsonargparse.*,torchmetrics.*,rich.*,yaml.*"


def test_py_typed_ships_with_the_package() -> None:
    assert (Path(nasprune.__file__).parent / "py.typed").is_file()


def test_mypy_sees_the_controller_class_not_any(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import nasprune.controller\nreveal_type(nasprune.controller.Reinforce)\n")
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nignore_missing_imports = True\n[mypy-{SKIPPED}]\nfollow_imports = skip\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"), str(probe)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    revealed = next(line for line in done.stdout.splitlines() if "Revealed type" in line)
    assert "-> nasprune.controller.reinforce.Reinforce" in revealed, done.stdout
