"""The controller's settings for `bench/versus.py`, chosen on search seeds the comparison does not report.

Each variant changes one setting of `configs/nasbench201.yaml`'s controller (`published`); every variant (and `RandomSearch`,
the reference) searches the 400k-FLOPs budget with search seeds 2 and 3 (the comparison reports 0
and 1), and its pick is trained again by the final pipeline (child seed 0). The table shows
validation accuracy only: the search's five best, the pick's, and the pick's after the final
training, the figure that decides the comparison and the one the best variant is chosen by
(`versus.Settings.controller`). The test split is not read.

Records go where `versus.py` keeps its own (`sweep/` beside them), so a killed sweep continues.

    python bench/versus_sweep.py                      # every variant
    python bench/versus_sweep.py --variant lr_0.01    # one (two processes share two cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nasprune.child import Design
from publish import publish
from versus import NASBENCH201_CONTROLLER, SCALES, Records, Settings, retrain_design, run_search

BUDGET = 400_000.0  # where nasprune trailed random search by most (0.79 ± 0.22 points)
SEEDS = (2, 3)
VARIANTS: dict[str, dict[str, Any]] = {
    "published": {},
    "lr_0.01": {"lr": 0.01},
    "entropy_0.05": {"entropy_weight": 0.05},
    "no_risk_seeking": {"risk_seeking": 1.0},
}


def variant_settings(base: Settings, variant: str) -> Settings:
    return dataclasses.replace(base, controller=NASBENCH201_CONTROLLER | VARIANTS[variant], controller_tuned={}, search_seeds=SEEDS)


def sweep_row(base: Settings, records: Records, work: Path, variant: str, make: bool) -> dict[str, Any] | None:
    """A variant's searches and their picks' final trainings (made where missing when `make`)."""
    method = "random" if variant == "random" else "nasprune"
    s = base if variant == "random" else variant_settings(base, variant)
    found = []
    for seed in SEEDS:
        name = f"sweep/{variant}_{BUDGET:g}_{seed}"
        parts = (method, BUDGET, seed, s.controller if method == "nasprune" else None)
        search = records.fetch(make, name, lambda: run_search(s, method, BUDGET, seed, work), *parts)
        if search is None:
            continue
        design = Design.from_dict(search["pick"]["design"])
        final = records.fetch(make, f"{name}_final", lambda: retrain_design(s, design, 0), design.to_json())
        if final is None:
            continue
        evaluated = [h["accuracy"] for h in search["history"] if not h.get("cached") and h.get("error_kind") is None]
        found.append({"top5": statistics.fmean(sorted(evaluated)[-5:]), "pick": search["pick"]["accuracy"],
                      "pick_flops": search["pick"]["flops"] / BUDGET, "final_val": final["val_acc"], "distinct": len(evaluated)})
    if not found:
        return None
    return {"variant": variant, "searches": len(found), "final_vals": [f["final_val"] for f in found],
            **{k: statistics.fmean(f[k] for f in found) for k in found[0]}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", choices=[*VARIANTS, "random"], help="run only this one; repeatable (default: all)")
    parser.add_argument("--work", default="runs/versus")
    parser.add_argument("--records", default="bench/results/versus_records")
    parser.add_argument("--out", default="bench/results/versus_sweep.md")
    parser.add_argument("--data-root", help="the folder holding MNIST/raw (default: ../shared/data from the project root)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    full = SCALES["full"] if args.data_root is None else dataclasses.replace(SCALES["full"], root=args.data_root)
    base = dataclasses.replace(full, controller_tuned={})  # the variants are the tuning's candidates: none applies
    records, work = Records(Path(args.records) / "full", base), Path(args.work) / "sweep"
    everything = [*VARIANTS, "random"]
    chosen = args.variant or everything
    rows = [r for v in everything if (r := sweep_row(base, records, work, v, make=v in chosen)) is not None]
    lines = [
        f"# nasprune's controller settings for bench/versus.py ({BUDGET:,.0f} FLOPs, search seeds {list(SEEDS)})",
        "",
        f"Made by `{shlex.join(['python', 'bench/versus_sweep.py'])}`. Validation accuracy % only "
        "(the test split is not read): mean over the search seeds of the search's five best evaluations, of its pick "
        "(best reward), and of the pick trained again by the final pipeline (child seed 0). Published: "
        f"{NASBENCH201_CONTROLLER} (configs/nasbench201.yaml); every other variant changes one setting of it.",
        "",
        "| variant | searches | distinct | top 5 | pick | pick FLOPs/budget | final val | per seed |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['variant']} | {r['searches']} | {r['distinct']:.0f} | {100 * r['top5']:.1f} | {100 * r['pick']:.1f} | "
          f"{r['pick_flops']:.2f} | {100 * r['final_val']:.2f} | {' / '.join(f'{100 * v:.2f}' for v in r['final_vals'])} |" for r in rows),
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
