"""Runs a config through the real CLI for several seeds and tables how the search went.

For each seed: episodes, wall time, peak resident memory of the run, mean reward of the first
and last 20% of episodes, mean of the last 20 episodes, and the first episode at which the
20-episode moving mean reached `--threshold` (if given).

    python bench/search_runs.py -c configs/digits.yaml --seeds 0 1 2
    python bench/search_runs.py -c configs/cartpole.yaml --seeds 0 1 2 --threshold 195
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path


def run_seed(config: str, seed: int, root: Path, extra: list[str]) -> dict[str, float]:
    command = [
        str(Path(sys.executable).with_name("nasprune")),
        "fit",
        "-c",
        config,
        f"--seed_everything={seed}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{process.stderr.read()}")
    (history,) = root.glob("lightning_logs/version_*/history.jsonl")
    rewards = np.array([json.loads(line)["reward"] for line in history.read_text().splitlines()])
    fifth = max(1, len(rewards) // 5)
    return {
        "episodes": len(rewards),
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "first_fifth": rewards[:fifth].mean(),
        "last_fifth": rewards[-fifth:].mean(),
        "last_20": rewards[-20:].mean(),
        "moving_20": np.convolve(rewards, np.ones(20) / 20, mode="valid") if len(rewards) >= 20 else np.array([]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/digits.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threshold", type=float, default=None, help="report when the 20-episode mean first reaches it")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default bench/results/<config>.md)")
    args, extra = parser.parse_known_args()
    out = args.out or Path(__file__).parent / "results" / f"search_runs_{Path(args.config).stem}.md"

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as root:
            result = run_seed(args.config, seed, Path(root), extra)
        reached = "—"
        if args.threshold is not None:
            hits = np.flatnonzero(result["moving_20"] >= args.threshold)
            reached = str(int(hits[0]) + 20) if hits.size else "never"
        rows.append(
            f"| {seed} | {result['episodes']} | {result['seconds']:.0f} | {result['peak_rss_mb']:.0f} | "
            f"{result['first_fifth']:.4f} | {result['last_fifth']:.4f} | {result['last_20']:.4f} | {reached} |"
        )
    command = shlex.join(["python", "bench/search_runs.py", *sys.argv[1:]])
    table = "\n".join(
        [
            f"Config `{args.config}`; produced by `{command}` on {os.cpu_count()} CPU cores.",
            "",
            "| seed | episodes | wall s | peak RSS MB | mean reward, first 20% | mean reward, last 20% | mean of last 20 episodes | episode where 20-ep mean ≥ threshold |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    publish(table, out)


if __name__ == "__main__":
    main()
