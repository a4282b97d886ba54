"""Episodes per minute on the digits env: one process vs parallel workers (async vector env, Ray).

Each backend plays `--updates` batches of `--episodes-per-update` episodes with the REINFORCE
controller (the real `EpisodeDataModule` and `Reinforce`; the per-update gradient step, a few
milliseconds, is left out) after one warm-up batch, which also starts the workers: its time is
the start-up column. The env is the one `--config` searches (by default the digits search of
`make search`: 3 training epochs + 1 fine-tuning epoch per child). The reference is
`num_workers: 1`: episodes played one after another in this process, torch using all cores.

    .venv/bin/python bench/parallel.py                                        # one process, async 2, ray 2
    .venv/bin/python bench/parallel.py --workers 2 --updates 3 --backends sync async
"""

from __future__ import annotations

import argparse
import atexit
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml

from nasprune.controller import EpisodeDataModule, Reinforce
from nasprune.controller.vector import available_cores
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

def env_kwargs(config: Path) -> dict[str, Any]:
    """The digits env exactly as a config's search uses it (search space, child data, training, reward)."""
    return yaml.safe_load(config.read_text())["data"]["env_kwargs"]


def measure(backend: str, workers: int, episodes_per_update: int, updates: int, seed: int, kwargs: dict[str, Any]) -> dict[str, float]:
    pl.seed_everything(seed)
    data = EpisodeDataModule(env_kwargs=kwargs, episodes_per_update=episodes_per_update, seed=seed, num_workers=workers, backend=backend)
    agent = Reinforce(data.observation_space, data.action_space)
    start = time.perf_counter()
    data.play_batch(agent, episodes_per_update)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(updates):
        data.play_batch(agent, episodes_per_update)
    seconds = time.perf_counter() - start
    data.teardown("fit")
    episodes = updates * episodes_per_update
    return {"episodes": episodes, "seconds": seconds, "per_minute": 60 * episodes / seconds, "warm_up": warm_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--episodes-per-update", type=int, default=None, help="default: 2 × workers")
    parser.add_argument("--backends", nargs="+", default=["sync", "async", "ray"], choices=["sync", "async", "ray"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=Path("configs/digits.yaml"), help="whose data.env_kwargs to play")
    parser.add_argument("--out", default="bench/results/parallel.md")
    args = parser.parse_args()
    per_update = args.episodes_per_update or 2 * args.workers
    if "ray" in args.backends:
        import ray

        temp = tempfile.mkdtemp(prefix="ray")  # session files and auth token stay out of ~/.ray
        os.environ["HOME"] = temp
        ray.init(num_cpus=available_cores(), _temp_dir=temp, include_dashboard=False, log_to_driver=False)
        atexit.register(shutil.rmtree, temp, ignore_errors=True)
        atexit.register(ray.shutdown)  # runs first: atexit is last in, first out
    rows = []
    for backend in args.backends:
        workers = 1 if backend == "sync" else args.workers
        result = measure(backend, workers, per_update, args.updates, args.seed, env_kwargs(args.config))
        rows.append((backend if workers > 1 else "one process", workers, result))
        print(f"{backend}: {result}", file=sys.stderr)
    reference = rows[0][2]["per_minute"]
    command = shlex.join(["python", "bench/parallel.py", *sys.argv[1:]])
    lines = [
        f"Episodes per minute on the env of `{args.config}`, {available_cores()} cores, {per_update} episodes per update, "
        f"{args.updates} update(s) after a warm-up one. Command: `{command}`",
        "",
        "| backend | workers | episodes | seconds | episodes/min | speed-up | start-up + first batch (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, workers, r in rows:
        lines.append(
            f"| {name} | {workers} | {r['episodes']} | {r['seconds']:.1f} | {r['per_minute']:.1f} | "
            f"{r['per_minute'] / reference:.2f}× | {r['warm_up']:.1f} |"
        )
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
