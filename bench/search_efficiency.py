"""Does the controller search better than the strategies of the NAS literature? NAS-Bench-201, CIFAR-10.

For each strategy and seed, one run of the real CLI (`nasprune fit -c configs/nasbench201.yaml`,
in this process) of `--run-factor` × the largest budget; the smaller budgets are prefixes of that
run (every strategy only sees the past, so the first B episodes of a longer run are a run of
budget B). Two tables. By episodes: the best episode *by reward* (12-epoch validation accuracy)
among the first B, its 200-epoch test accuracy. By distinct designs: the same among the episodes
up to the B-th distinct design (a repeat is a cache hit and costs nothing in a real search); a run
with fewer than B distinct designs counts with all its episodes. Mean ± std and standard error
over the seeds. Then the controller's throughput: two `nasprune fit` processes of different
lengths, timed from the outside.

    python bench/search_efficiency.py                           # 30 seeds, budgets 50 100 200 500
    python bench/search_efficiency.py --seeds 5 --skip-throughput
    python bench/search_efficiency.py --strategies controller --first-seed 100 --skip-throughput -- --model.init_args.lr=0.02
    python bench/search_efficiency.py --table ../shared/data/nasbench201/nb201_cifar10.csv
    python bench/search_efficiency.py --strategies gp --budgets 50 100 200 --seeds 10   # GP: the budgets that fit

Writes `bench/results/search_efficiency.md` (the table, its caption holds this command) and
`bench/results/search_efficiency.png` (test accuracy vs budget, one line per strategy).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import multiprocessing
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SEQUENTIAL = ["--data.episodes_per_update=1", "--data.num_envs=1"]  # one design at a time, as published
OPTUNA = ["--model=nasprune.controller.OptunaSearch", "--model.init_args.storage=journal"]  # journal: see docs/strategies.md
STRATEGIES: dict[str, list[str]] = {
    "controller": [],  # the config's model: the REINFORCE controller with its tuned settings
    "random": ["--model=nasprune.controller.RandomSearch"],
    "evolution": ["--model=nasprune.controller.RegularizedEvolution", *SEQUENTIAL],
    "local_search": ["--model=nasprune.controller.LocalSearch", *SEQUENTIAL],
    "tpe": [*OPTUNA, *SEQUENTIAL],
    "gp": [*OPTUNA, "--model.init_args.sampler={class_path: optuna.samplers.GPSampler}", *SEQUENTIAL],
    "nsga2": [*OPTUNA, "--model.init_args.sampler={class_path: optuna.samplers.NSGAIISampler}", *SEQUENTIAL],
}
# published or measured on this same table (CIFAR-10 test accuracy after 200 epochs)
REFERENCES = ("random search ≈ 93.88 at 200 episodes; REINFORCE 93.85 ± 0.37 (published); regularized evolution ≈ 93.92; "
              "a plain local search (10 random starts, first improvement, 100 seeds) 93.98 / 94.20 / 94.33 / 94.37 at 50 / 100 / 200 / 500; "
              "optimum 94.37")


def cli_args(config: str, seed: int, root: Path, updates: int, table: str | None, extra: list[str], quiet: bool = True) -> list[str]:
    args = ["fit", "-c", config, f"--seed_everything={seed}", f"--trainer.default_root_dir={root}", f"--trainer.max_steps={updates}"]
    if quiet:
        args += ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    return args + extra + ([f"--data.env_kwargs.table={table}"] if table else [])


def episodes_per_update(config: str, extra: list[str]) -> int:
    """The config's `data.episodes_per_update`, or the last override of it among `extra`."""
    value = int((yaml.safe_load(Path(config).read_text()).get("data") or {}).get("episodes_per_update", 4))
    for arg in extra:
        if arg.startswith("--data.episodes_per_update="):
            value = int(arg.split("=", 1)[1])
    return value


def search(config: str, strategy: str, seed: int, *, budgets: list[int], episodes: int, table: str | None, extra: list[str], report: str) -> dict:
    """One CLI run of `episodes` episodes; per budget the reported column of the best-reward episode
    among the first B episodes and among the episodes up to the B-th distinct design."""
    from nasprune.cli import run  # imported here: `--help` stays fast

    args_extra = STRATEGIES[strategy] + extra
    per_update = episodes_per_update(config, args_extra)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        run(cli_args(config, seed, Path(root), math.ceil(episodes / per_update), table, args_extra))
        seconds = time.perf_counter() - start
        (history_file,) = Path(root).glob("lightning_logs/*/history.jsonl")
        history = [json.loads(line) for line in history_file.read_text().splitlines()]
    rewards = np.array([h["reward"] for h in history])
    first_seen: dict[str, int] = {}
    for i, h in enumerate(history):
        first_seen.setdefault(h["arch"], i)
    distinct_ends = sorted(first_seen.values())  # distinct_ends[k]: the episode of the (k+1)-th new design
    out = {"seconds": seconds, "episodes": len(history), "distinct": len(first_seen)}
    for budget in budgets:
        best = int(np.argmax(rewards[:budget]))  # the first of equal rewards
        out[budget] = float(history[best][report])
        out[f"unique_{budget}"] = len({h["arch"] for h in history[:budget]})
        end = distinct_ends[budget - 1] + 1 if budget <= len(distinct_ends) else len(history)
        out[f"distinct_{budget}"] = float(history[int(np.argmax(rewards[:end]))][report])
        out[f"episodes_for_{budget}"] = end
    return out


def throughput(config: str, table: str | None, extra: list[str], short: int, long: int) -> dict[str, float]:
    """Episodes per second of the controller through the `nasprune` command: two runs, of about
    `short` and `long` episodes (whole updates), whatever the episodes per update."""
    per_update = episodes_per_update(config, extra)
    wall, cpu = {}, {}
    for updates in (max(1, round(short / per_update)), max(1, round(long / per_update))):
        with tempfile.TemporaryDirectory() as root:
            # as a user runs it: progress bar and model summary on (the output goes nowhere)
            command = [str(Path(sys.executable).with_name("nasprune")), *cli_args(config, 0, Path(root), updates, table, extra, quiet=False)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall[updates] = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[updates] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    episodes = {updates: updates * per_update for updates in wall}
    short, long = sorted(wall)
    added = episodes[long] - episodes[short]
    return {
        "episodes": episodes[long],
        "seconds": wall[long],
        "end_to_end": episodes[long] / wall[long],
        "steady": added / (wall[long] - wall[short]),
        "steady_cpu": added / (cpu[long] - cpu[short]),
        "startup": wall[short] - episodes[short] * (wall[long] - wall[short]) / added,
        "load": os.getloadavg()[0],
    }


def summarise(results: dict[str, list[dict]], budgets: list[int], key: str = "") -> dict[str, dict[int, tuple[float, float, float]]]:
    """strategy → budget → (mean, std, standard error) over seeds of `run[f"{key}{budget}"]` (`key`
    empty: by episodes; `distinct_`: by distinct designs)."""
    table = {}
    for strategy, runs in results.items():
        table[strategy] = {}
        for budget in budgets:
            values = np.array([r[f"{key}{budget}" if key else budget] for r in runs])
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            table[strategy][budget] = (float(values.mean()), std, std / math.sqrt(len(values)))
    return table


def verdict(stats: dict, budget: int) -> str:
    """The controller against the best peer at `budget`: ✓ first, = tied (within one SE of the difference), ✗ behind."""
    peers = {s: row[budget] for s, row in stats.items() if s != "controller"}
    if "controller" not in stats or not peers:
        return ""
    best = max(peers, key=lambda s: peers[s][0])
    (mc, _, sec), (mp, _, sep) = stats["controller"][budget], peers[best]
    diff, se_diff = mc - mp, math.sqrt(sec**2 + sep**2)
    mark = "✓" if diff >= 0 else ("=" if -diff <= se_diff else "✗")
    return f"{diff:+.3f} vs {best} (SE {se_diff:.3f}) {mark}"


def table_lines(stats: dict, results: dict, budgets: list[int], unit: str) -> list[str]:
    lines = [
        f"| strategy ({unit}) | " + " | ".join(f"B = {b}" for b in budgets) + " | ms / episode |",
        "|---|" + "---|" * (len(budgets) + 1),
    ]
    for strategy, row in stats.items():
        cells = [f"{m:.2f} ± {s:.2f} ({se:.3f})" for m, s, se in (row[b] for b in budgets)]
        runs = results[strategy]
        per_episode = 1e3 * sum(r["seconds"] for r in runs) / max(1, sum(r["episodes"] for r in runs))
        lines.append(f"| {strategy} | " + " | ".join(cells) + f" | {per_episode:.2f} |")
    if "controller" in stats and len(stats) > 1:
        lines.append("| controller − best peer | " + " | ".join(verdict(stats, b) for b in budgets) + " | |")
    return lines


def markdown(results: dict, budgets: list[int], seeds: range, command: str, report: str, speed: dict | None, episodes: int) -> str:
    by_episodes, by_distinct = summarise(results, budgets), summarise(results, budgets, "distinct_")
    caption = (f"Best design by reward (`valid_acc_12ep`), its `{report}`: mean ± std (standard error) over {len(seeds)} seeds "
               f"({seeds.start}–{seeds.stop - 1}); ✓ the controller first, = tied within one standard error of the difference, ✗ behind.")
    lines = [f"**Search efficiency on NAS-Bench-201 (CIFAR-10).** {caption} Produced by `{command}`.", "",
             "Budget B counted in **episodes** (a repeated design costs an episode):", ""]
    lines += table_lines(by_episodes, results, budgets, "episodes")
    lines += ["", f"Budget B counted in **distinct designs evaluated** (runs of {episodes} episodes; a repeat is a cache hit):", ""]
    lines += table_lines(by_distinct, results, budgets, "distinct designs")
    distinct = " | ".join(f"{s} {np.mean([r['distinct'] for r in runs]):.0f}" for s, runs in results.items())
    short = {s: sum(r["distinct"] < budgets[-1] for r in runs) for s, runs in results.items()}
    lines += ["", f"Distinct designs in {episodes} episodes (mean): {distinct}. "
              + "Runs short of B = " + f"{budgets[-1]} distinct designs: " + ", ".join(f"{s} {n}" for s, n in short.items()) + "."]
    lines += ["", f"References on this table: {REFERENCES}.", ""]
    lines.append("ms / episode: inside the in-process CLI runs (parsing and setup included).")
    if speed is not None:
        lines += [
            "",
            f"**Controller throughput through the `nasprune fit` command:** {speed['episodes']} episodes in "
            f"{speed['seconds']:.1f} s = **{speed['end_to_end']:.0f} episodes/s end to end** (Python start-up, imports, "
            f"config parsing, table loading included); **{speed['steady']:.0f} episodes/s** once running (the difference of "
            f"two runs of different lengths; start-up ≈ {speed['startup']:.1f} s); **{speed['steady_cpu']:.0f} episodes per "
            f"CPU-second** of the process (what an idle core gives; the load average was {speed['load']:.1f} on this "
            f"2-core machine during the measurement).",
        ]
    return "\n".join(lines) + "\n"


def plot(stats: dict, budgets: list[int], report: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy, row in stats.items():
        means = [row[b][0] for b in budgets]
        errors = [row[b][2] for b in budgets]
        ax.errorbar(budgets, means, yerr=errors, marker="o", capsize=3, label=strategy)
    ax.axhline(94.37, color="grey", linestyle="--", linewidth=1, label="optimum 94.37")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("budget (episodes)")
    ax.set_ylabel(f"{report} of the best-reward design (%)")
    ax.set_title("NAS-Bench-201 CIFAR-10: mean ± standard error")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/nasbench201.yaml")
    parser.add_argument("--seeds", type=int, default=30, help="how many seeds: FIRST … FIRST + N − 1")
    parser.add_argument("--first-seed", type=int, default=0, help="tune on other seeds (e.g. 100) than the ones reported (0 …)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 500])
    parser.add_argument("--run-factor", type=float, default=1.5, help="episodes per run = factor × the largest budget (room for repeats)")
    parser.add_argument("--strategies", nargs="+", default=[s for s in STRATEGIES if s != "gp"], choices=list(STRATEGIES),
                        help="default: all but gp (a Gaussian process refitted per trial: run it at the budgets that fit)")
    parser.add_argument("--table", help="override data.env_kwargs.table")
    parser.add_argument("--report", default="test_acc_200ep", help="the table column reported (never rewarded)")
    parser.add_argument("--out", default=str(RESULTS / "search_efficiency"), help="path prefix of the .md and .png")
    parser.add_argument("--jobs", type=int, default=1, help="seeds searched in parallel processes (the ms / episode then share the cores)")
    parser.add_argument("--peers-from", metavar="JSON",
                        help="take the runs of the strategies not in --strategies from an earlier output of this script "
                             "(same seeds, budgets and run length; the runs are deterministic)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--throughput-episodes", type=int, nargs=2, default=[80, 16000], metavar=("SHORT", "LONG"),
                        help="episodes of the two timed runs (rounded to whole updates)")
    parser.add_argument("extra", nargs="*", help="more CLI overrides for every run of every strategy, after `--`, e.g. --strategies controller -- --model.init_args.lr=0.02")
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python " + shlex.join(["bench/search_efficiency.py", *sys.argv[1:]])
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning_fabric.utilities.seed").setLevel(logging.WARNING)  # "Seed set to …" per run

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results: dict[str, list[dict]] = {}
    episodes = round(args.run_factor * max(args.budgets))
    context = multiprocessing.get_context("fork")  # each search a fresh process image of this one: no re-import
    for strategy in args.strategies:
        one = functools.partial(search, args.config, strategy, budgets=args.budgets, episodes=episodes, table=args.table, extra=args.extra, report=args.report)
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            results[strategy] = list(pool.map(one, seeds))
        print(f"{strategy}: done ({sum(r['seconds'] for r in results[strategy]):.0f} s)", file=sys.stderr, flush=True)
    if args.peers_from:
        earlier = json.loads(Path(args.peers_from).read_text(encoding="utf-8"))
        for strategy, runs in earlier["runs"].items():
            if strategy in results:
                continue
            if earlier.get("seeds", [0, 30]) != [seeds.start, seeds.stop] or len(runs) != len(seeds) or any(r["episodes"] < episodes or str(max(args.budgets)) not in r for r in runs):
                parser.error(f"--peers-from: {strategy}'s runs there are not {len(seeds)} runs of {episodes} episodes at these budgets")
            results[strategy] = [{(int(k) if k.isdigit() else k): v for k, v in r.items()} for r in runs]
    speed = None
    if not args.skip_throughput and "controller" in results:
        speed = throughput(args.config, args.table, args.extra, *args.throughput_episodes)
    text = markdown(results, args.budgets, seeds, command, args.report, speed, episodes)
    stats = summarise(results, args.budgets)
    out = Path(args.out)
    publish(text, out.with_suffix(".md"))
    distinct = summarise(results, args.budgets, "distinct_")
    out.with_suffix(".json").write_text(json.dumps({"stats": {s: {str(b): v for b, v in row.items()} for s, row in stats.items()},
                                                    "stats_distinct": {s: {str(b): v for b, v in row.items()} for s, row in distinct.items()},
                                                    "runs": results, "seeds": [seeds.start, seeds.stop], "throughput": speed, "command": command}, indent=1), encoding="utf-8")
    plot(stats, args.budgets, args.report, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
