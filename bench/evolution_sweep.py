"""Which population and sample size should regularized evolution default to at 100–500 queries?

A sweep of (P, S) on NAS-Bench-201 (CIFAR-10) over tuning seeds (100 …, never the reported 0–29).
The strategy plays the env directly (`EpisodeDataModule.play_batch` + `learn`, one episode per
update, as its CLI recipe does), without the Trainer around it: the same algorithm, a fraction of
the time. Per setting and budget: the 200-epoch test accuracy of the best design by reward among
the first B episodes, mean (standard error) over the seeds, and the mean over budgets ≥ 100 that
picks the default.

    python bench/evolution_sweep.py                    # 30 tuning seeds from 100, budgets 100 200 500
    python bench/evolution_sweep.py --seeds 10 --grid 10,3 30,10

Writes `bench/results/evolution_sweep.md`.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import numpy as np
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

from nasprune.controller import EpisodeDataModule, RegularizedEvolution

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nasbench201" / "nb201_cifar10.csv"
GRID = ["10,3", "20,5", "30,10", "10,5", "20,3", "30,5", "50,10", "50,25", "100,25"]


def run(table: Path, population: int, sample: int, seed: int, budgets: list[int], report: str) -> dict[int, float]:
    data = EpisodeDataModule("nasprune/NasBench201-v0", {"table": str(table)}, episodes_per_update=1, seed=seed)
    strategy = RegularizedEvolution(data.observation_space, data.action_space, population, sample, seed=seed)
    best_reward, best_reported, out = float("-inf"), float("nan"), {}
    for episode in range(1, max(budgets) + 1):
        (played,) = data.play_batch(strategy, 1)
        strategy.learn([played])
        if played.total_reward > best_reward:  # the first of equal rewards, as search_efficiency.py takes it
            best_reward, best_reported = played.total_reward, float(played.info[report])
        if episode in budgets:
            out[episode] = best_reported
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(TABLE))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--grid", nargs="+", default=GRID, help="P,S pairs")
    parser.add_argument("--report", default="test_acc_200ep")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "evolution_sweep.md"))
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows = []
    for pair in args.grid:
        population, sample = (int(v) for v in pair.split(","))
        runs = [run(Path(args.table), population, sample, seed, args.budgets, args.report) for seed in seeds]
        stats = []
        for budget in args.budgets:
            values = np.array([r[budget] for r in runs])
            stats.append((values.mean(), values.std(ddof=1) / math.sqrt(len(values))))
        rows.append((population, sample, stats, float(np.mean([m for m, _ in stats]))))
        print(f"P={population} S={sample}: done", file=sys.stderr, flush=True)
    best = max(rows, key=lambda row: row[3])
    command = "python " + shlex.join(["bench/evolution_sweep.py", *sys.argv[1:]])
    lines = [
        f"**Regularized evolution: population P and sample S on NAS-Bench-201 (CIFAR-10), tuning seeds {seeds.start}–{seeds.stop - 1}.** "
        f"`{args.report}` of the best design by reward within B episodes, mean (standard error). Produced by `{command}`.",
        "",
        "| P | S | " + " | ".join(f"B = {b}" for b in args.budgets) + " | mean |",
        "|---|---|" + "---|" * (len(args.budgets) + 1),
    ]
    for population, sample, stats, mean in rows:
        mark = " **(default)**" if (population, sample) == best[:2] else ""
        cells = " | ".join(f"{m:.2f} ({se:.3f})" for m, se in stats)
        lines.append(f"| {population} | {sample} | {cells} | {mean:.3f}{mark} |")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
