"""Shipping a search's result: the exported files load, rebuild and give the recorded numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from conftest import WITHOUT_NASPRUNE
from nasprune.child import DigitsDataModule, count_flops, count_params
from nasprune.cli import main
from nasprune.export import held_out_accuracy, load_checkpoint, read_history

# Runs in a fresh interpreter that refuses to import nasprune: the TorchScript file must be enough.
FRESH_PROCESS = WITHOUT_NASPRUNE + textwrap.dedent(
    """
    import torch

    model = torch.jit.load(sys.argv[1])
    x = torch.load(sys.argv[2])
    torch.save(model(x), sys.argv[3])
    assert not any(name.startswith("nasprune") for name in sys.modules)
    """
)


@pytest.fixture(scope="module")
def export_dir(tiny_search_run: Path) -> Path:
    return tiny_search_run / "export"


def test_export_writes_every_form(export_dir: Path, tiny_search_run: Path) -> None:
    assert {p.name for p in export_dir.iterdir()} >= {"design.json", "model.ckpt", "model.ts", "metrics.json"}
    best = max(read_history(tiny_search_run / "history.jsonl"), key=lambda r: r["reward"])
    assert json.loads((export_dir / "design.json").read_text()) == best["design"]
    metrics = json.loads((export_dir / "metrics.json").read_text())
    assert metrics["episode"] == best["episode"] and metrics["design_str"] == best["design_str"]
    assert metrics["final_training"]["epochs"] == 2 and metrics["final_training"]["finetune_epochs"] == 1
    assert metrics["final_training"]["lr"] == 0.01  # the rest is the search's child training


def test_checkpoint_rebuilds_through_the_child_api_with_the_recorded_numbers(export_dir: Path, tiny_search_run: Path) -> None:
    metrics = json.loads((export_dir / "metrics.json").read_text())
    data = yaml.safe_load((tiny_search_run / "config.yaml").read_text())["data"]["env_kwargs"]["datamodule"]["init_args"]
    net = load_checkpoint(export_dir / "model.ckpt")
    assert str(net.design) == metrics["design_str"]
    assert count_params(net) == metrics["params"]
    assert count_flops(net, (1, 8, 8)) == metrics["flops"]
    assert held_out_accuracy(net, DigitsDataModule(**data), 10) == pytest.approx(metrics["test_accuracy"])
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["latency_ms"] > 0


def test_torchscript_runs_in_a_process_that_never_imports_nasprune(export_dir: Path, tmp_path: Path) -> None:
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(export_dir / "model.ts"), str(tmp_path / "x.pt"), str(tmp_path / "logits.pt")],
        check=True,
        cwd=tmp_path,
    )
    with torch.no_grad():
        expected = load_checkpoint(export_dir / "model.ckpt")(x)
    assert torch.allclose(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5)


def test_onnx_gives_the_same_logits(export_dir: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    (logits,) = ReferenceEvaluator(onnx.load(str(export_dir / "model.onnx"))).run(None, {"input": x.numpy()})
    with torch.no_grad():
        expected = load_checkpoint(export_dir / "model.ckpt")(x).numpy()
    assert logits.shape == (3, 10)
    assert abs(logits - expected).max() < 1e-4


def test_export_command_with_overrides_and_a_torn_history(tiny_search_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.yaml", "history.jsonl"):
        (run_dir / name).write_text((tiny_search_run / name).read_text())
    with (run_dir / "history.jsonl").open("a") as handle:
        handle.write('{"episode": 3, "reward": 99.0, "des')  # a run killed mid-write
    main(["export", str(run_dir), "--epochs", "1", "--finetune-epochs", "0", "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out == f"export: {tmp_path / 'out'}\n"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["final_training"]["epochs"] == 1 and metrics["final_training"]["finetune_epochs"] == 0
    assert metrics["episode"] == json.loads((tiny_search_run / "export" / "metrics.json").read_text())["episode"]


def test_export_of_a_run_without_child_networks_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"env_id": "CartPole-v1"}}))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("nasprune: error: data.env_id: export builds child networks")
