"""Overhead of a search: the share of wall time spent outside child training and pruning.

Runs the digits config through the real CLI (in this process) twice, with `--updates` and
2 × `--updates` controller updates. Child time is what `evaluate_design` reports per episode
(`seconds/train`, `/validate`, `/prune`, `/finetune`, `/score`: Lightning fits, the unpruned child's
validation, pruning, the pruned child's validation and FLOP counting) summed over `history.jsonl`; everything else — the controller's sampling and updates,
the env, logging, history files, the Trainer — is overhead. The steady-state share takes the
difference of the two runs, which cancels start-up (imports, config parsing, the env's
reference costs); the whole-run share includes it. Target: ≤ 5%.

    python bench/overhead.py                    # ≈ 3 minutes on 2 idle cores
    python bench/overhead.py --updates 4        # a quick look
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from nasprune.cli import run
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

CHILD_STAGES = ("train", "validate", "prune", "finetune", "score")


def search(config: str, updates: int, seed: int, root: Path) -> dict[str, float]:
    start = time.perf_counter()
    run([
        "fit",
        "-c",
        config,
        f"--trainer.max_steps={updates}",
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--export.enabled=false",  # the search alone: no final training of its best design
    ])
    wall = time.perf_counter() - start
    (history,) = root.glob("lightning_logs/version_*/history.jsonl")
    records = [json.loads(line) for line in history.read_text().splitlines()]
    child = sum(r.get(f"seconds/{stage}", 0.0) for r in records for stage in CHILD_STAGES)
    evaluate = sum(r.get("seconds/evaluate", 0.0) for r in records)
    validate = sum(r.get("seconds/validate", 0.0) for r in records)
    return {"episodes": len(records), "wall": wall, "child": child, "validate": validate, "evaluate": evaluate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/digits.yaml")
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    parser.add_argument("--out", default="bench/results/overhead.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        short = search(args.config, args.updates, args.seed, Path(tmp) / "short")
        long = search(args.config, 2 * args.updates, args.seed, Path(tmp) / "long")
    steady = {key: long[key] - short[key] for key in long}

    def row(name: str, r: dict[str, float]) -> str:
        outside = r["wall"] - r["child"]
        return (
            f"| {name} | {r['episodes']:.0f} | {r['wall']:.1f} | {r['child']:.1f} | {r['validate']:.1f} | {r['wall'] - r['evaluate']:.1f} | "
            f"{outside:.1f} | **{100 * outside / r['wall']:.1f}%** |"
        )

    command = "python " + shlex.join(sys.argv)
    lines = [
        f"Search overhead on `{args.config}` (torch threads {args.threads}): the share of wall time outside child "
        f"training, validation, pruning, fine-tuning and scoring. Command: `{command}`",
        "",
        "| run | episodes | wall (s) | child (s) | of which the unpruned validation (s) | outside the env's evaluation (s) | "
        "outside the child (s) | share outside the child |",
        "|---|---|---|---|---|---|---|---|",
        row(f"{args.updates} updates, start-up included", short),
        row(f"{2 * args.updates} updates, start-up included", long),
        row("steady state (difference of the two)", steady),
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
