"""`nasprune report RUN_DIR`: one PNG and one markdown page about a finished search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasprune.cli import main
from nasprune.report import read_scalars


@pytest.fixture(scope="module")
def report(tiny_search_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    main(["report", str(tiny_search_run), "--out", str(out), "--top-k", "3"])
    return out


def test_the_png_is_a_real_picture_of_plausible_size(report: Path) -> None:
    png = report / "report.png"
    picture = Image.open(png)
    assert picture.format == "PNG" and picture.size == (1800, 530)
    assert 30_000 < png.stat().st_size < 2_000_000
    pixels = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 200  # three drawn panels, not a blank canvas


def test_the_markdown_summary(report: Path, tiny_search_run: Path) -> None:
    text = (report / "report.md").read_text()
    history = [json.loads(line) for line in (tiny_search_run / "history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda h: h["reward"])
    command = (tiny_search_run / "command.txt").read_text().strip()
    assert command.startswith("nasprune fit -c ") and "--trainer.max_steps=3" in command
    assert f"- **Command:** `{command}`" in text
    assert "- **Budget:** 3 updates × 1 per update = 3 episodes; **played:** 3 episodes in 3 updates" in text
    assert "- **Wall time:** " in text and "unknown" not in text.split("**Wall time:** ")[1].splitlines()[0]
    assert f"- **Best:** reward {best['reward']:.4f} at episode {best['episode']}: `{best['design_str']}`" in text
    exported = json.loads((tiny_search_run / "export" / "metrics.json").read_text())
    assert f"test accuracy {exported['test_accuracy']:.4f}" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| rank | reward | accuracy | FLOPs | params | design |")
    assert len(table) == 1 + min(3, len({h["design_str"] for h in history}))
    assert table[1].startswith(f"| 1 | {best['reward']:.4f} |")
    assert "![report](report.png)" in text


def test_the_baseline_comes_from_the_event_files(tiny_search_run: Path) -> None:
    baseline = read_scalars(tiny_search_run, "search/baseline")
    assert [step for step, _ in baseline] == [0, 1, 2]
    history = [json.loads(line) for line in (tiny_search_run / "history.jsonl").read_text().splitlines()]
    # the baseline an update uses: none at first (the batch's own mean reward), then b ← 0.9·b + 0.1·mean after each
    r0, r1 = history[0]["reward"], history[1]["reward"]
    assert [value for _, value in baseline] == pytest.approx([r0, r0, 0.9 * r0 + 0.1 * r1], abs=1e-6)
    assert read_scalars(tiny_search_run, "search/no_such_tag") == []


def test_a_directory_without_history_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("nasprune: error: RUN_DIR: ")
