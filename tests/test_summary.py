"""`nasprune fit` ends by saying what the search found and how to look further."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasprune.cli import main, run_summary

REPO = Path(__file__).resolve().parents[1]


def search(capsys: pytest.CaptureFixture[str], root: Path, config: str, *overrides: str) -> tuple[Path, dict, list[str]]:
    """`nasprune fit` on a packaged config: its run directory, best record and printed lines."""
    main(["fit", "-c", str(REPO / "configs" / f"{config}.yaml"), f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false", *overrides])
    run_dir = root / "lightning_logs" / "version_0"
    return run_dir, json.loads((run_dir / "best.json").read_text()), capsys.readouterr().out.splitlines()


def test_a_nasprune_run_names_its_best_design_and_the_exported_model(tiny_search_run: Path) -> None:
    best = json.loads((tiny_search_run / "best.json").read_text())
    metrics = json.loads((tiny_search_run / "export" / "metrics.json").read_text())
    lines = run_summary(tiny_search_run / "best.json", tiny_search_run / "export", tiny_search_run / "history.jsonl")
    assert lines == [
        f"best:     {best['design_str']}  (episode {best['episode']}, reward {best['reward']:.4f})",
        f"          val accuracy {best['accuracy']:.2%}, FLOPs {best['flops']:,}, params {best['params']:,}",
        f"exported: {tiny_search_run / 'export'}  (test accuracy {metrics['test_accuracy']:.2%}; {', '.join(metrics['files'])})",
        f"history:  {tiny_search_run / 'history.jsonl'}",
        "look further:",
        f"  tensorboard --logdir {tiny_search_run.parent}",
        f"  nasprune report {tiny_search_run}",
        f"  nasprune export {tiny_search_run}",
    ]
    assert " | " in best["design_str"] and 0 < metrics["test_accuracy"] <= 1


def test_a_run_without_episodes_says_so(tmp_path: Path) -> None:
    assert run_summary(tmp_path / "best.json", None) == [f"no episode finished; run: {tmp_path}"]


def test_a_tabular_search_ends_with_its_best_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = REPO.parent / "shared/data/nasbench201/nb201_cifar10.csv"
    run_dir, best, printed = search(capsys, tmp_path, "nasbench201", "--trainer.max_steps=2", f"--data.env_kwargs.table={table}")
    assert printed[-6:] == [
        f"best:     {best['arch']}  (episode {best['episode']}, reward {best['reward']:.4f})",
        f"          val accuracy (12 epochs) {best['valid_acc_12ep']:.2f}%, test accuracy (200 epochs) {best['test_acc_200ep']:.2f}%",
        f"history:  {run_dir / 'history.jsonl'}",
        "look further:",
        f"  tensorboard --logdir {run_dir.parent}",
        f"  nasprune report {run_dir}",
    ]  # and no `nasprune export`: a table lookup has no network to export


def test_a_gymnasium_control_task_ends_with_its_best_return(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, best, printed = search(capsys, tmp_path, "cartpole", "--trainer.max_steps=1", "--trainer.callbacks=[]")
    assert printed[-5:] == [
        f"best:     reward {best['reward']:.4f}  (episode {best['episode']}, {best['length']} steps)",
        f"history:  {run_dir / 'history.jsonl'}",
        "look further:",
        f"  tensorboard --logdir {run_dir.parent}",
        f"  nasprune report {run_dir}",
    ]


def test_the_help_lists_the_commands_a_search_has(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "{fit}" in out and "validate" not in out and "predict" not in out
    assert "  nasprune export RUN_DIR " in out and "  nasprune report RUN_DIR " in out
