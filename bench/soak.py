"""Soak: a long tabular search through the real `nasprune` command, its resident memory sampled as it runs.

A search that runs for days must not grow: history lines, TensorBoard events, checkpoints every
update and the evaluation bookkeeping all accumulate per episode. This runs 5,000 NAS-Bench-201
episodes (checkpointing after every update, as by default) and reads the process's resident set
size from /proc every 50 ms next to the number of episodes in history.jsonl.

    .venv/bin/python bench/soak.py                      # 5,000 episodes, the shared table
    .venv/bin/python bench/soak.py --episodes 1000      # a quick look

Prints a markdown table and writes it to bench/results/soak.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

REPO = Path(__file__).resolve().parents[1]
SHARED_TABLE = REPO.parent / "shared" / "data" / "nasbench201" / "nb201_cifar10.csv"


def resident_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def episodes_in(history: Path) -> int:
    return history.read_bytes().count(b"\n") if history.exists() else 0


def soak(table: Path, episodes: int, per_update: int, root: Path) -> tuple[list[tuple[float, int, float]], float, str]:
    updates = episodes // per_update
    command = [
        sys.executable, "-m", "nasprune", "fit", "-c", str(REPO / "configs" / "nasbench201.yaml"),
        f"--data.env_kwargs.table={table}", f"--trainer.max_steps={updates}", f"--data.episodes_per_update={per_update}",
        f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    history = root / "lightning_logs" / "version_0" / "history.jsonl"
    samples: list[tuple[float, int, float]] = []  # (seconds, episodes done, RSS MB)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None:
        rss = resident_mb(process.pid)
        if rss is not None:
            samples.append((time.perf_counter() - start, episodes_in(history), rss))
        time.sleep(0.05)
    stderr = process.stderr.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"the search failed:\n{stderr[-3000:]}")
    return samples, time.perf_counter() - start, " ".join(Path(c).name if c == sys.executable else c for c in command)


def at(samples: list[tuple[float, int, float]], episodes: int) -> tuple[float, int, float]:
    return next(s for s in samples if s[1] >= episodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5000)
    parser.add_argument("--episodes-per-update", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500, help="episodes after which growth is measured")
    parser.add_argument("--table", type=Path, default=SHARED_TABLE)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples, wall, command = soak(args.table, args.episodes, args.episodes_per_update, Path(tmp))
        done = episodes_in(Path(tmp) / "lightning_logs" / "version_0" / "history.jsonl")
        checkpoint_mb = (Path(tmp) / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").stat().st_size / 2**20
    warm = at(samples, args.warmup)
    end = at(samples, done)  # the first sample once the last episode is written
    searching = [s for s in samples if warm[0] <= s[0] <= end[0]]
    peak = max(s[2] for s in searching)
    shutdown = max(s[2] for s in samples if s[0] >= end[0])
    rows = [("start-up (before the first episode)", 0, max(s[2] for s in samples if s[1] == 0))]
    for mark in sorted({args.warmup, *(args.episodes * k // 10 for k in (2, 4, 6, 8))}):
        s = at(samples, mark)
        rows.append((f"{s[1]} episodes ({s[0]:.1f} s)", s[1], s[2]))
    rows.append((f"the last episode written ({end[0]:.1f} s)", end[1], end[2]))
    rows.append(("after it: end of fit, process exit (peak)", done, shutdown))
    lines = [
        f"Soak: {done} NAS-Bench-201 episodes ({args.episodes_per_update} per update, last.ckpt after every update) "
        f"through the `nasprune` command; resident memory (VmRSS) sampled every 50 ms.",
        "",
        f"Command: `{command}` (made by `python bench/soak.py --episodes {args.episodes}`)",
        "",
        "| point | episodes in history | RSS (MB) |",
        "|---|---|---|",
        *(f"| {name} | {n} | {rss:.1f} |" for name, n, rss in rows),
        "",
        f"Growth while searching, from warm-up ({args.warmup} episodes, {warm[2]:.1f} MB) to the last episode: "
        f"**{end[2] - warm[2]:+.1f} MB**; to the peak while searching ({peak:.1f} MB): **{peak - warm[2]:+.1f} MB**. "
        f"Wall time {wall:.1f} s with start-up ({done / (end[0] - at(samples, 1)[0]):.0f} episodes/s while searching; last.ckpt {checkpoint_mb:.2f} MB).",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
