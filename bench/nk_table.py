"""A second NAS-Bench-201-style table: a rugged synthetic landscape with the CIFAR-10 table's schema.

Only one real table (CIFAR-10) is at hand, so strategies tuned on it are also checked on a
landscape of a different shape: Kauffman's NK model over the 6 edges × 5 ops of the cell. Each
edge's contribution depends on its own op and on the ops of `K` other edges (a random table of
5^(K+1) uniform values per edge), so the landscape has many local optima (none at K = 0, a random
table at K = 5). `test_acc_200ep` (reported) is 70 + 25 × the mean contribution, normalised to the
landscape's range; `valid_acc_12ep` (rewarded) is the same minus 5, plus Gaussian noise of
`--noise` points (a short training run's signal), so the best design by reward is not always the
best one. `test_acc_12ep` is a second draw of that noise; the latency columns are the real table's.

    python bench/nk_table.py --out bench/results/nk_table.csv          # K = 2, noise 0.3, seed 0
    python bench/search_efficiency.py --table bench/results/nk_table.csv --strategies controller random
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import numpy as np

from nasprune.envs.nasbench201_env import OPS, actions_to_arch

ROOT = Path(__file__).resolve().parents[1]
EDGES = 6


def nk_fitness(k: int, seed: int) -> dict[tuple[int, ...], float]:
    """Every design's NK fitness in [0, 1] (normalised to the landscape's range)."""
    rng = np.random.default_rng(seed)
    neighbours = [rng.choice([j for j in range(EDGES) if j != i], size=k, replace=False) for i in range(EDGES)]
    contributions = rng.random((EDGES,) + (len(OPS),) * (k + 1))
    designs = list(itertools.product(range(len(OPS)), repeat=EDGES))
    raw = np.array([np.mean([contributions[(i, d[i], *(d[j] for j in neighbours[i]))] for i in range(EDGES)]) for d in designs])
    scaled = (raw - raw.min()) / (raw.max() - raw.min())
    return dict(zip(designs, scaled.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=2, help="other edges each edge's contribution depends on (0–5)")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the search signal's noise, in accuracy points")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latencies", default=str(ROOT.parent / "shared" / "data" / "nasbench201" / "nb201_cifar10.csv"),
                        help="a NAS-Bench-201 table whose latency columns are copied (by arch)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "nk_table.csv"))
    args = parser.parse_args()
    if not 0 <= args.k < EDGES:
        parser.error(f"--k must be in 0…{EDGES - 1}, got {args.k}")
    fitness = nk_fitness(args.k, args.seed)
    with open(args.latencies, newline="", encoding="utf-8") as handle:
        latencies = {row["arch"]: (row["latency_ms_pixel3"], row["latency_ms_raspi4"]) for row in csv.DictReader(handle)}
    rng = np.random.default_rng(args.seed + 1)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "arch", "valid_acc_12ep", "test_acc_12ep", "test_acc_200ep", "latency_ms_pixel3", "latency_ms_raspi4"])
        for index, (design, value) in enumerate(fitness.items()):
            arch = actions_to_arch(design)
            test = 70.0 + 25.0 * value
            valid, test_12 = test - 5.0 + args.noise * rng.standard_normal(2)
            writer.writerow([index, arch, f"{valid:.4f}", f"{test_12:.4f}", f"{test:.4f}", *latencies[arch]])


if __name__ == "__main__":
    main()
