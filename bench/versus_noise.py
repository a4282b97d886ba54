"""How noisy is the search signal of `bench/versus.py`? Designs of one of its searches trained again with
the search's own short training (1 + 1 epochs) under other seeds.

A search ranks designs by one short training each. If the spread of one design's validation accuracy
over seeds is as large as the spread between the designs a search compares, its pick is luck and no
strategy can beat random search by much. This retrains a search's best and worst designs (by its own
record, validation only: the test split is not read) with `--seeds` new child seeds:

    python bench/versus_noise.py --search runs/versus/full/records/search/nasprune_100000_0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from versus import SCALES, datamodule  # first: it imports the CLI before nasprune.export is imported
from nasprune.child import ChildTraining, Design, evaluate_design
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--search", required=True, help="a search record of bench/versus.py (records/search/*.json)")
    parser.add_argument("--designs", type=int, default=2, help="this many of the search's best and as many of its worst")
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="child seeds (none of the search's)")
    parser.add_argument("--data-root", help="the folder holding MNIST/raw (default: ../shared/data from the project root)")
    parser.add_argument("--out", default="bench/results/versus_noise.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = SCALES["full"] if args.data_root is None else dataclasses.replace(SCALES["full"], root=args.data_root)
    search = json.loads(Path(args.search).read_text())
    evaluated = sorted((h for h in search["history"] if not h.get("cached") and h.get("error_kind") is None), key=lambda h: -h["accuracy"])
    chosen = evaluated[: args.designs] + evaluated[-args.designs :]
    data = datamodule(s)
    training = ChildTraining(**s.search_training)
    lines = [
        "# The search signal's noise (bench/versus.py)",
        "",
        f"`python bench/versus_noise.py --search {args.search}`",
        "",
        f"Designs of the search `{search['method']}` at {search['budget']:,.0f} FLOPs (seed {search['seed']}), its {args.designs} best and "
        f"{args.designs} worst by its own validation accuracy, trained again with the search's training ({s.search_training}) "
        f"for child seeds {args.seeds}. Validation accuracy %; the test split is not read. "
        f"Accuracy over all {len(evaluated)} designs the search trained: mean {100 * statistics.fmean(h['accuracy'] for h in evaluated):.1f}, "
        f"std {100 * statistics.stdev(h['accuracy'] for h in evaluated):.1f}.",
        "",
        "| design | FLOPs | in the search | again: mean ± std | min–max | wall s per training (shared machine) |",
        "|---|---|---|---|---|---|",
    ]
    spreads = []
    for record in chosen:
        design = Design.from_dict(record["design"])
        accs, seconds = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            accs.append(100 * evaluate_design(design, data, training, s.search_space["stem_width"], seed).accuracy)
            seconds.append(time.perf_counter() - start)
        spreads.append(statistics.stdev(accs))
        lines.append(
            f"| `{record['design_str'].replace('|', chr(92) + '|')}` | {record['flops']:,.0f} | {100 * record['accuracy']:.1f} | {statistics.fmean(accs):.1f} ± {statistics.stdev(accs):.1f} | "
            f"{min(accs):.1f}–{max(accs):.1f} | {statistics.fmean(seconds):.0f} |"
        )
    lines += ["", f"Mean std of one design over seeds: {statistics.fmean(spreads):.1f} points."]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
