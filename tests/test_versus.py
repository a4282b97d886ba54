"""bench/versus.py on its tiny settings (256 MNIST training images, one epoch, two evaluations per search)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from torch import nn

from nasprune.child import ChildDataModule

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data"
sys.path.insert(0, str(REPO / "bench"))

import versus  # noqa: E402  (bench/ is put on the path just above)

ROW_KEYS = {"method", "budget_flops", "flops", "params", "test_acc_mean", "test_acc_std", "n_runs", "search_seconds"}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy")
def test_each_method_delivers_within_budget_and_only_the_final_score_reads_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scoring: list[bool] = []
    test_reads: list[bool] = []  # per test-loader request: was it made by the final scoring?
    score = versus.test_accuracy

    def audited_score(net: nn.Module, data: Any) -> float:
        scoring.append(True)
        try:
            return score(net, data)
        finally:
            scoring.pop()

    loader = ChildDataModule.test_dataloader

    def audited_loader(self: ChildDataModule) -> Any:
        test_reads.append(bool(scoring))
        return loader(self)

    monkeypatch.setattr(versus, "test_accuracy", audited_score)
    monkeypatch.setattr(ChildDataModule, "test_dataloader", audited_loader)
    monkeypatch.setitem(versus.SCALES, "tiny", dataclasses.replace(versus.SCALES["tiny"], root=str(SHARED.resolve())))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "versus"
    versus.main(["--scale", "tiny", "--work", str(tmp_path / "work"), "--records", str(tmp_path / "records"), "--out", str(out)])

    rows = json.loads(out.with_suffix(".json").read_text())
    s = versus.SCALES["tiny"]
    assert {(r["method"], r["budget_flops"]) for r in rows} == {(m, float(b)) for m in versus.METHODS for b in s.budgets}
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["method"] in versus.METHODS
        assert row["flops"] <= row["budget_flops"] and row["within_budget"]
        searches = 1 if row["method"] == "torch_pruning" else len(s.search_seeds)
        assert row["n_runs"] == searches * len(s.child_seeds)
        assert 0.0 <= row["test_acc_mean"] <= 100.0
    assert test_reads and all(test_reads)  # the test split is read, and only by the final scoring
    assert out.with_suffix(".png").stat().st_size > 0
    md = out.with_suffix(".md").read_text()
    assert "| 100,000 | nasprune |" in md
    assert "## What the searches saw" in md and md.count("| 100,000 | nasprune | 2 |") == 1  # two distinct designs evaluated

    # resumable: a second run makes nothing again; a removed record is the only one remade
    records = tmp_path / "records" / "tiny"
    before = {p: p.stat().st_mtime_ns for p in records.rglob("*.json")}
    victim = records / "final" / "nasprune_100000_0_0.json"
    victim.unlink()
    versus.main(["--scale", "tiny", "--work", str(tmp_path / "work"), "--records", str(tmp_path / "records"), "--out", str(out)])
    after = {p: p.stat().st_mtime_ns for p in records.rglob("*.json")}
    assert set(after) == set(before)
    assert [p for p in after if after[p] != before.get(p)] == [victim]

    # a search whose record is lost (killed after its last update) continues its own run: nothing is trained again
    search = records / "search" / "nasprune_100000_0.json"
    first = json.loads(search.read_text())
    search.unlink()
    versus.main(["--scale", "tiny", "--work", str(tmp_path / "work"), "--records", str(tmp_path / "records"), "--out", str(out)])
    again = json.loads(search.read_text())
    assert again["resumed"] and again["pick"] == first["pick"] and again["history"] == first["history"]
    assert len(list((tmp_path / "work" / "tiny" / "runs").glob("nasprune_100000_0_*/lightning_logs/version_*"))) == 1
