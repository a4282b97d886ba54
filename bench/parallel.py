"""Parallel evaluation: 2 workers vs 1 on digits, a simulated cluster to 64 workers, and stale updates on NAS-Bench-201.

Three parts (`--part`), each writing its own table:

* `digits` — episodes per minute on the env of `--config` (the default digits search: 3 training
  + 1 fine-tuning epochs per child), one process vs 2 `async` workers vs 2 Ray workers, measured
  interleaved (the order rotates every repeat) so that the machine's load hits all alike. Each
  measurement plays a warm-up batch (which starts the workers: the start-up column) and then
  `--updates` batches of `--episodes-per-update`, with a REINFORCE step between batches. The same
  seed gives the same episodes whatever the workers (sample, then evaluate), so every
  configuration trains the very same children. It also keeps the one-process child times in
  `bench/results/digits_child_seconds.json`, the distribution the simulation draws from.
* `simulation` — Ray actors whose children sleep for a measured digits child time (× `--scale`)
  instead of training (`bench/sleeping_env.py`): 1, 4, 16 and 64 workers need no cores. Lockstep
  rounds (the stepped env) against the evaluation queue: in index order, costliest first (from
  noisy cost estimates), and with `max_staleness: 1`, at several episodes per worker per update.
  Throughput, parallel efficiency (speed-up over 1 worker ÷ workers), where the workers' time goes
  (children, round trips, idle while the controller works, idle on the update's tail), mean
  staleness, and the controller's own time per update (its sampling and gradient steps).
* `staleness` — REINFORCE on NAS-Bench-201 (500 episodes, 10 seeds) with synchronous updates and
  with `max_staleness` 1 and 2, its 20 episodes per update evaluated by 8 `sync` workers (in this
  process, taking the jobs in turn: a cluster of equally fast workers, deterministic): the
  mean staleness and the test accuracy (200 epochs) of the best design found.

    .venv/bin/python bench/parallel.py --part digits
    .venv/bin/python bench/parallel.py --part simulation
    .venv/bin/python bench/parallel.py --part staleness
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids, as the CLI does)
from nasprune.controller import Episode, EpisodeDataModule, Reinforce
from nasprune.controller.vector import available_cores
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

BENCH = Path(__file__).resolve().parent
CHILD_SECONDS = BENCH / "results" / "digits_child_seconds.json"


def command() -> str:
    return shlex.join(["python", "bench/parallel.py", *sys.argv[1:]])


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def start_ray(num_cpus: int) -> Callable[[], None]:
    """A local Ray whose session files stay in a temporary HOME; its actors can import `bench/` modules."""
    import ray

    from nasprune.controller.ray_backend import LOCAL_RAY_CONFIG

    temp = tempfile.mkdtemp(prefix="ray")  # short: Ray's socket paths must stay under 108 bytes
    os.environ.update(HOME=temp, RAY_AUTH_MODE="disabled")
    for attempt in range(3):  # Ray gives its raylet 30 s to register (hard-coded): on a loaded machine it may need another try
        try:
            ray.init(num_cpus=num_cpus, _temp_dir=temp, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_RAY_CONFIG,
                     runtime_env={"env_vars": {"PYTHONPATH": str(BENCH), "RAY_AUTH_MODE": "disabled"}})  # fmt: skip
            break
        except Exception as err:  # Ray raises a bare Exception for it
            if attempt == 2 or "timed out during startup" not in str(err):
                raise
            ray.shutdown()
            print(f"Ray did not start in time ({load()}); trying again", file=sys.stderr)

    def stop() -> None:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)

    return stop


def learn(agent: Reinforce, optimizer: torch.optim.Optimizer, batch: Sequence[Episode]) -> None:
    """A REINFORCE step on `batch` (reward minus the batch mean, importance-weighted): the update's own cost."""
    log_probs, _, valid = agent._replay(batch)
    rewards = torch.tensor([e.total_reward for e in batch])
    weights = torch.tensor([e.weight for e in batch])
    loss = -((weights * (rewards - rewards.mean())).unsqueeze(1) * log_probs * valid).sum() / len(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def measure(data: EpisodeDataModule, episodes_per_update: int, updates: int, seed: int) -> dict[str, Any]:
    """A warm-up batch (starting the workers), then `updates` timed batches with a REINFORCE step after each."""
    pl.seed_everything(seed)
    agent = Reinforce(data.observation_space, data.action_space)
    optimizer = agent.configure_optimizers()
    start = time.perf_counter()
    learn(agent, optimizer, data.play_batch(agent, episodes_per_update))
    warm_up = time.perf_counter() - start
    played: list[Episode] = []
    start = time.perf_counter()
    for _ in range(updates):
        batch = data.play_batch(agent, episodes_per_update)
        learn(agent, optimizer, batch)
        played += batch
    seconds = time.perf_counter() - start
    data.teardown("fit")
    return {"episodes": len(played), "seconds": seconds, "per_minute": 60 * len(played) / seconds, "warm_up": warm_up,
            "staleness": statistics.mean(e.staleness for e in played),
            "child_seconds": [e.info["seconds/evaluate"] for e in played if "seconds/evaluate" in e.info and not e.info.get("cached")]}  # fmt: skip


# ---- digits: 2 workers vs 1 ---------------------------------------------------------------------


def digits(args: argparse.Namespace) -> None:
    kwargs = yaml.safe_load(args.config.read_text())["data"]["env_kwargs"]
    runs = [("one process", "async", 1), ("async", "async", 2), ("ray", "ray", 2)]
    stop = start_ray(available_cores())
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in runs}
    loads = [load()]
    for repeat in range(args.repeats):
        for name, backend, workers in runs[repeat % 3 :] + runs[: repeat % 3]:  # the order rotates: load hits all alike
            data = EpisodeDataModule(env_kwargs=kwargs, episodes_per_update=args.episodes_per_update, seed=args.seed, num_workers=workers, backend=backend)
            results[name].append(measure(data, args.episodes_per_update, args.updates, args.seed))
            print(f"repeat {repeat} {name}: {results[name][-1]['per_minute']:.1f} episodes/min, {load()}", file=sys.stderr)
        loads.append(load())
    stop()
    child = sorted(s for r in results["one process"] for s in r["child_seconds"])
    CHILD_SECONDS.write_text(json.dumps({"command": command(), "seconds": child}) + "\n")
    lines = [
        f"Episodes per minute on the env of `{args.config}`, {available_cores()} cores, {args.episodes_per_update} episodes per update, "
        f"{args.updates} timed updates ({args.updates * args.episodes_per_update} episodes) after a warm-up one, {args.repeats} repeats "
        f"measured interleaved; every configuration trains the same children. Load while it ran: {'; '.join(loads)}. Command: `{command()}`",
        "",
        "| backend | workers | episodes/min per repeat | speed-up per repeat | speed-up mean (min–max) | start-up + first batch (s) |",
        "|---|---|---|---|---|---|",
    ]
    reference = [r["per_minute"] for r in results["one process"]]
    for name, _, workers in runs:
        rates = [r["per_minute"] for r in results[name]]
        ups = [rate / ref for rate, ref in zip(rates, reference)]
        lines.append(
            f"| {name} | {workers} | {', '.join(f'{x:.1f}' for x in rates)} | {', '.join(f'{x:.2f}×' for x in ups)} | "
            f"{statistics.mean(ups):.2f}× ({min(ups):.2f}–{max(ups):.2f}) | {statistics.mean(r['warm_up'] for r in results[name]):.1f} |"
        )
    lines.append("")
    lines.append(f"One-process child times (s, {len(child)} children): median {statistics.median(child):.2f}, "
                 f"min {child[0]:.2f}, max {child[-1]:.2f} (kept in `{CHILD_SECONDS.relative_to(BENCH.parent)}`).")  # fmt: skip
    publish("\n".join(lines), args.out or "bench/results/parallel.md")


# ---- simulation: to 64 workers ------------------------------------------------------------------

# scheduling: (its name in the table, env, max_staleness, env arguments besides the child times)
MODES: dict[str, tuple[str, str, int, dict[str, Any]]] = {
    "lockstep": ("lockstep rounds", "sleeping_env:Sleeping-v0", 0, {}),
    "queue": ("queue", "sleeping_env:QueuedSleeping-v0", 0, {}),
    "costliest-first": ("queue, costliest first (cost estimate ×e^±0.3)", "sleeping_env:QueuedSleeping-v0", 0, {"cost_noise": 0.3}),
    "stale-1": ("queue, max_staleness 1", "sleeping_env:QueuedSleeping-v0", 1, {}),
}


class Timeline:
    """When each queued evaluation ran and when the controller itself worked, to say where a worker's time goes.

    It wraps the queue's pool (`start_pool`) and its sampling (`EvaluationQueue.sample`): an
    evaluation runs from its submission until the controller holds its answer, so the time past
    the child's own (`seconds/evaluate`) is the round trip (dispatch, Ray, the controller noticing).
    """

    def __init__(self) -> None:
        import nasprune.controller.datamodule as datamodule
        from nasprune.controller.queue import EvaluationQueue

        self.jobs: list[tuple[float, float, float]] = []  # (submitted, answered, the child's seconds)
        self.controller: list[tuple[float, float]] = []  # intervals of sampling and of gradient steps
        start_pool, sample = datamodule.start_pool, EvaluationQueue.sample
        datamodule.start_pool = lambda *args: TimedPool(start_pool(*args), self)
        EvaluationQueue.sample = lambda queue, *args: self.timed(sample, queue, *args)  # type: ignore[method-assign]

    def timed(self, call: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.controller.append((start, time.perf_counter()))

    def breakdown(self, workers: int, start: float, end: float) -> dict[str, float]:
        """Shares of the workers' time in [start, end]: children, round trips, idle while the controller works, idle on the update's tail."""
        total = workers * (end - start)
        inside = [(s, f, child) for s, f, child in self.jobs if f > start and s < end]
        clip = [(max(s, start), min(f, end)) for s, f, _ in inside]
        busy = sum(f - s for s, f in clip)
        child = sum(c * (b - a) / (f - s) for (s, f, c), (a, b) in zip(inside, clip) if f > s)  # a child across an edge: its share inside
        # idle = workers less running, integrated; split by whether the controller was working then
        edges = sorted({start, end, *(t for s, f in clip for t in (s, f)), *(t for a, b in self.controller for t in (a, b) if start < t < end)})
        idle_controller = idle_tail = 0.0
        for left, right in zip(edges, edges[1:]):
            middle = (left + right) / 2
            idle = workers - sum(s <= middle < f for s, f in clip)
            if any(a <= middle < b for a, b in self.controller):
                idle_controller += idle * (right - left)
            else:
                idle_tail += idle * (right - left)
        finished = [f - s - c for s, f, c in self.jobs if start <= f <= end]
        return {"child": child / total, "round_trip": (busy - child) / total, "idle_controller": idle_controller / total, "idle_tail": idle_tail / total,
                "evaluations": len(finished), "round_trip_ms": 1000 * statistics.mean(finished) if finished else math.nan}  # fmt: skip


class TimedPool:
    """A queue pool whose submissions and answers `Timeline` records."""

    def __init__(self, pool: Any, timeline: Timeline) -> None:
        self.pool, self.timeline = pool, timeline
        self._submitted: dict[int, float] = {}

    def free(self) -> int:
        return int(self.pool.free())

    def submit(self, job: Any) -> None:
        self._submitted[id(job)] = time.perf_counter()
        self.pool.submit(job)

    def wait(self) -> list[Any]:
        outcomes = self.pool.wait()
        now = time.perf_counter()
        for job, result in outcomes:
            submitted = self._submitted.pop(id(job))
            if result is not None:
                self.timeline.jobs.append((submitted, now, float(result[1].get("seconds/evaluate", 0.0))))
        return list(outcomes)

    def close(self) -> None:
        self.pool.close()


def simulate(data: EpisodeDataModule, per_update: int, warm_up: int, updates: int, seed: int, timeline: Timeline) -> dict[str, Any]:
    """`warm_up` batches (the workers start and settle), then `updates` timed ones, a REINFORCE step after each."""
    pl.seed_everything(seed)
    agent = Reinforce(data.observation_space, data.action_space)
    optimizer = agent.configure_optimizers()
    timeline.jobs.clear()
    timeline.controller.clear()
    begun = time.perf_counter()
    for _ in range(warm_up):
        timeline.timed(learn, agent, optimizer, data.play_batch(agent, per_update))
    start = time.perf_counter()
    played: list[Episode] = []
    for _ in range(updates):
        batch = data.play_batch(agent, per_update)
        timeline.timed(learn, agent, optimizer, batch)
        played += batch
    end = time.perf_counter()
    data.teardown("fit")
    controller = sum(min(b, end) - max(a, start) for a, b in timeline.controller if b > start and a < end)
    workers = data.num_workers
    child = sum(e.info["seconds/evaluate"] for e in played)
    result = {"warm_up": start - begun, "seconds": end - start, "episodes": len(played), "staleness": statistics.mean(e.staleness for e in played),
              "controller": controller / updates, "child": child / (workers * (end - start))}  # fmt: skip
    if timeline.jobs:  # the queue: evaluations finished in the window, and where the workers' time went
        result.update(timeline.breakdown(workers, start, end))
    else:  # lockstep rounds: every episode of the window was evaluated in it
        result["evaluations"] = len(played)
    result["per_minute"] = 60 * result["evaluations"] / result["seconds"]
    return result


def simulation(args: argparse.Namespace) -> None:
    if not CHILD_SECONDS.exists():
        raise SystemExit(f"{CHILD_SECONDS} is missing: run `python bench/parallel.py --part digits` first")
    measured = json.loads(CHILD_SECONDS.read_text())["seconds"]
    # one line per measured row, kept as they finish: a rerun with the same settings resumes
    partial = Path(args.sim_partial)
    settings = {"scale": args.scale, "warm_up": args.sim_warm_up, "updates": args.sim_updates, "seed": args.seed, "seconds": measured}
    kept = [json.loads(line) for line in partial.read_text().splitlines()] if partial.exists() else []
    done = {(r["config"], r["workers"]): r for r in kept if r["settings"] == settings}
    missing = any((config, workers) not in done for config in args.configs for workers in args.sim_workers)
    stop = start_ray(max(args.sim_workers)) if missing else (lambda: None)
    timeline = Timeline()
    rows: list[tuple[str, int, int, dict[str, Any]]] = []
    for config in args.configs:
        key, _, per_worker_text = config.partition(":")
        mode, env_id, staleness, env_kwargs = MODES[key]
        per_worker = int(per_worker_text)
        for workers in sorted(args.sim_workers, key=lambda w: (w != 1, -w)):  # the reference, then the largest (the figure that matters)
            if (config, workers) in done:
                rows.append((mode, per_worker, workers, done[config, workers]["result"]))
                continue
            per_update = per_worker * workers
            data = EpisodeDataModule(env_id, {"seconds": measured, "scale": args.scale, **env_kwargs}, episodes_per_update=per_update, seed=args.seed,
                                     num_workers=workers, backend="ray", max_staleness=staleness, worker_resources={"num_cpus": 1})  # fmt: skip
            timed = simulate(data, per_update, args.sim_warm_up, args.sim_updates, args.seed, timeline)
            timed["load"] = load()
            rows.append((mode, per_worker, workers, timed))
            with partial.open("a") as out:
                out.write(json.dumps({"config": config, "workers": workers, "settings": settings, "result": timed}) + "\n")
            print(f"{mode}, {per_worker}/worker × {workers}: {timed['per_minute']:.1f} evaluations/min, children {timed['child']:.0%} of "
                  f"the workers' time, controller {timed['controller']:.3f} s/update, {load()}", file=sys.stderr)  # fmt: skip
    stop()
    rows.sort(key=lambda row: (list(MODES.values()).index(next(m for m in MODES.values() if m[0] == row[0])), row[1], row[2]))
    mean_child = args.scale * statistics.mean(measured)
    lines = [
        f"Simulated children on Ray: each sleeps for a measured digits child time × {args.scale:g} (mean {mean_child:.2f} s, "
        f"{min(measured) * args.scale:.2f}–{max(measured) * args.scale:.2f} s); every actor up, then {args.sim_warm_up} warm-up update(s) "
        f"(the workers settle), then {args.sim_updates} timed updates, a REINFORCE step after each. Throughput: evaluations finished in the timed "
        f"window per minute. Efficiency: the speed-up over 1 worker (same scheduling, same episodes per worker) ÷ workers, the speed-up "
        f"counted in child seconds evaluated per second (each row evaluates its own draws of children, whose mean differs by several "
        f"percent between rows: counting episodes would add that noise) — the workers' share of time spent on children, over the "
        f"1-worker row's. Where the "
        f"workers' time went (the queue): children sleeping; the round trip of each evaluation (submission until the controller holds "
        f"its answer, less the child's time); idle while the controller samples or takes its gradient step; idle waiting for the "
        f"update's last evaluations (the tail). Controller s/update: its sampling and gradient step. Measured on a 2-core machine "
        f"shared with other work (the load average when each row ended is in the last column). The rows are kept in `{partial}` "
        f"as they finish (a rerun resumes). Command: `{command()}`",
        "",
        "| scheduling | episodes per worker per update | workers | evaluations | per minute | speed-up | efficiency | children | round trips | idle: controller | idle: tail | round trip (ms) | mean staleness | controller s/update | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, per_worker, workers, timed in rows:
        single = next((t for m, k, w, t in rows if m == mode and k == per_worker and w == 1), None)
        speed_up = workers * timed["child"] / single["child"] if single is not None else math.nan
        shares = [f"{timed[key]:.0%}" if key in timed else "—" for key in ("child", "round_trip", "idle_controller", "idle_tail")]
        trip = f"{timed['round_trip_ms']:.1f}" if "round_trip_ms" in timed else "—"
        lines.append(
            f"| {mode} | {per_worker} | {workers} | {timed['evaluations']} | {timed['per_minute']:.1f} | {speed_up:.2f}× | {speed_up / workers:.0%} | "
            f"{' | '.join(shares)} | {trip} | {timed['staleness']:.2f} | {timed['controller']:.3f} | {timed['load'].split()[2]} |"
        )
    publish("\n".join(lines), args.out or "bench/results/parallel_simulation.md")


# ---- staleness: search quality on NAS-Bench-201 -------------------------------------------------


def staleness(args: argparse.Namespace) -> None:
    from nasprune.cli import run
    from nasprune.records import read_history

    settings = args.staleness
    partial = Path(args.staleness_partial)  # one line per finished run: a run stopped part-way resumes from it
    done = {(r["seed"], r["max_staleness"]): r for r in map(json.loads, partial.read_text().splitlines())} if partial.exists() else {}
    with tempfile.TemporaryDirectory() as temp:
        for seed in range(args.seeds):
            for k in settings:
                if (seed, k) in done:
                    continue
                root = Path(temp) / f"{seed}-{k}"
                run(["fit", "-c", "configs/nasbench201.yaml", f"--data.env_kwargs.table={args.table}", f"--seed_everything={seed}",
                     "--model.init_args.distinct_designs=false", "--data.episodes_per_update=20", "--trainer.max_steps=25",
                     "--data.num_envs=1", "--data.backend=sync", "--data.num_workers=8", f"--data.max_staleness={k}", f"--trainer.default_root_dir={root}",
                     "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--export.enabled=false"])  # fmt: skip
                (run_dir,) = (root / "lightning_logs").iterdir()
                history = read_history(run_dir / "history.jsonl")
                best = max(history, key=lambda r: r["reward"])
                done[seed, k] = {"seed": seed, "max_staleness": k, "test": float(best["test_acc_200ep"]), "reward": float(best["reward"]),
                                 "staleness": statistics.mean(r["staleness"] for r in history), "episodes": len(history)}  # fmt: skip
                with partial.open("a") as out:
                    out.write(json.dumps(done[seed, k]) + "\n")
                print(f"seed {seed}, max_staleness {k}: {done[seed, k]}, {load()}", file=sys.stderr)
    lines = [
        f"REINFORCE (the settings of `configs/nasbench201.yaml`, without distinct_designs) on NAS-Bench-201 CIFAR-10, 500 episodes "
        f"(20 per update), seeds 0–{args.seeds - 1}, evaluated by 8 `sync` workers taking the jobs in turn. Test accuracy (200 epochs) "
        f"of the best design by reward (12-epoch validation accuracy), mean ± std over seeds. The runs are kept in "
        f"`{partial}` as they finish (a rerun resumes). Command: `{command()}`"
        + ("" if 2 in settings else " (max_staleness 2 would repeat the max_staleness 1 runs exactly: these workers evaluate the jobs "
           "in the order they were handed out, and an update's 20 jobs outnumber the 8 workers, so by the time its last job is handed "
           "out every job of the update before has finished, and nothing is ever sampled two updates ahead)"),
        "",
        "| updates | mean staleness | best validation accuracy | its test accuracy |",
        "|---|---|---|---|",
    ]
    for k in settings:
        runs = [done[seed, k] for seed in range(args.seeds)]
        tests, stale, rewards = ([r[key] for r in runs] for key in ("test", "staleness", "reward"))
        name = "synchronous" if k == 0 else f"max_staleness {k}"
        lines.append(f"| {name} | {statistics.mean(stale):.2f} | {statistics.mean(rewards):.2f} ± {statistics.stdev(rewards):.2f} | "
                     f"{statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f} |")  # fmt: skip
    publish("\n".join(lines), args.out or "bench/results/parallel_staleness.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["digits", "simulation", "staleness"], required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the table's file (default: bench/results/parallel[_PART].md)")
    digits_args = parser.add_argument_group("digits")
    digits_args.add_argument("--config", type=Path, default=Path("configs/digits.yaml"), help="whose data.env_kwargs to play")
    digits_args.add_argument("--episodes-per-update", type=int, default=8)
    digits_args.add_argument("--updates", type=int, default=5)
    digits_args.add_argument("--repeats", type=int, default=3)
    sim = parser.add_argument_group("simulation")
    sim.add_argument("--sim-workers", type=int, nargs="+", default=[1, 4, 16, 64])
    sim.add_argument("--configs", nargs="+", default=["lockstep:2", "queue:2", "costliest-first:2", "stale-1:2", "queue:8", "costliest-first:8"],
                     help=f"SCHEDULING:EPISODES_PER_WORKER_PER_UPDATE, scheduling one of {', '.join(MODES)}")  # fmt: skip
    sim.add_argument("--sim-warm-up", type=int, default=1, help="updates before the timed window (the actors are up before the first)")
    sim.add_argument("--sim-updates", type=int, default=8, help="timed updates")
    sim.add_argument("--sim-partial", default="bench/results/parallel_simulation.jsonl", help="each finished row, one line: a rerun resumes")
    sim.add_argument("--scale", type=float, default=1.0, help="child times × this")
    nb201 = parser.add_argument_group("staleness")
    nb201.add_argument("--table", default="../shared/data/nasbench201/nb201_cifar10.csv")
    nb201.add_argument("--seeds", type=int, default=10)
    nb201.add_argument("--staleness", type=int, nargs="+", default=[0, 1], help="the max_staleness settings compared")
    nb201.add_argument("--staleness-partial", default="bench/results/parallel_staleness.jsonl", help="each finished run, one line: a rerun resumes")
    args = parser.parse_args()
    # the one-process digits reference trains on every core; elsewhere the controller's batches are small, and one
    # thread is fastest (more stall each other when the cores are shared: a tenfold slowdown measured here under load)
    torch.set_num_threads(available_cores() if args.part == "digits" else 1)
    {"digits": digits, "simulation": simulation, "staleness": staleness}[args.part](args)


if __name__ == "__main__":
    main()
