"""Prune your own model: searched per-group ratios vs three baselines at 2× and 4× fewer FLOPs.

The network is `configs/prune_resnet18_mnist.yaml`'s torchvision ResNet-18 (1→3-channel 1×1 conv
adapter) trained by the env on an MNIST subset (weights cached under `pretrain_dir`). At each
FLOPs target (a fraction of the unpruned FLOPs) and for each seed:

- searched: the REINFORCE controller through the real CLI, `--evaluations` episodes, each pruned,
  briefly fine-tuned and scored on the validation split (the config's `training`); the pick is the
  best-reward episode within ±3% of the target (`TargetWindowReward`, the env's FLOPs mask);
- (a) uniform: one ratio for every group, solved on the env's exact FLOPs model to meet the target;
- (b) global: torch-pruning's `global_pruning=True` with the same importance, its one ratio
  bisected until the pruned net is within ±3% of the target;
- (c) random: `RandomSearch` through the same CLI, env and mask, as many evaluations as the search,
  picked the same way.

Every pick is then fine-tuned with the same final budget (the config's `export.final_training`)
with the seed as fine-tune seed and scored on MNIST's official test split (10,000 images, never
seen by a search). Latency: CPU, one thread, batch 1, median of 50 forwards.

    python bench/prune_your_model.py                              # 3 seeds, 2× and 4×, 16 evaluations
    python bench/prune_your_model.py --seeds 0 --targets 0.5 --evaluations 4   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from nasprune.child.metrics import count_flops, count_params, measure_latency
from nasprune.cli import run  # first: it imports the callbacks before nasprune.export does
from nasprune.child.prune_model import prune_and_score, prune_network
from nasprune.envs.prune_model_env import PruneModelEnv
from nasprune.export import final_training, held_out_accuracy
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

METHODS = ("searched", "uniform", "global", "random")


def in_window(flops: float, target_flops: float, tolerance: float) -> bool:
    return abs(flops / target_flops - 1.0) <= tolerance


def uniform_ratio(env: PruneModelEnv, target_flops: float) -> float:
    """The one ratio for all groups whose FLOPs (the env's exact model) are nearest the target."""
    low, high = 0.0, 0.99
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if env.groups.flops([mid] * len(env.groups)) > target_flops else (low, mid)
    return (low + high) / 2


def global_ratio(env: PruneModelEnv, target_flops: float, tolerance: float) -> float:
    """torch-pruning's global ratio whose pruned network is within the window (bisection on real pruning)."""
    low, high = 0.0, 0.95
    for _ in range(14):
        mid = (low + high) / 2
        net = prune_network(copy.deepcopy(env.network), env.input_shape, env.num_classes, mid, env.training.importance, env.ignored_layers)
        flops = count_flops(net, env.input_shape)
        if in_window(flops, target_flops, tolerance / 3):
            return mid
        low, high = (mid, high) if flops > target_flops else (low, mid)
    return (low + high) / 2


def search(config: dict, strategy: str, seed: int, evaluations: int, target: float, root: Path) -> tuple[list[dict], float]:
    """One search through the CLI on a copy of the config with the target set; its history and wall time.

    A search already in `root` (the same settings, finished) is read back instead: on CPU a search is
    deterministic for its seed, so a re-run with another final budget need not repeat it.
    """
    done = root / "search.json"
    key = [strategy, seed, evaluations, target, {k: v for k, v in config.items() if k != "export"}]
    if done.is_file():
        kept = json.loads(done.read_text())
        if kept["settings"] == key:
            return kept["history"], kept["seconds"]
    settings = json.loads(json.dumps(config))
    settings["data"]["env_kwargs"]["flops_target"] = target
    settings["model"] = {"class_path": strategy, "init_args": {}} if strategy != "reinforce" else settings["model"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(settings))
    per_update = settings["data"]["episodes_per_update"]
    start = time.perf_counter()
    run([
        "fit",
        "-c",
        str(root / "config.yaml"),
        f"--seed_everything={seed}",
        f"--trainer.max_steps={-(-evaluations // per_update)}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--export.enabled=false",
    ])
    seconds = time.perf_counter() - start
    history = [json.loads(line) for line in max(root.glob("lightning_logs/version_*/history.jsonl")).read_text().splitlines()]
    done.write_text(json.dumps({"settings": key, "history": history, "seconds": seconds}))
    return history, seconds


def pick(records: list[dict], target_flops: float, tolerance: float) -> dict:
    """The best-reward successful episode within the window (the best-reward one if none is)."""
    ok = [r for r in records if "error" not in r]
    inside = [r for r in ok if in_window(r["flops"], target_flops, tolerance)]
    return max(inside or ok, key=lambda r: r["reward"])


def final_score(env: PruneModelEnv, ratios: dict[str, float] | float, training: Any, seed: int) -> dict[str, float]:
    """Fine-tune the pick with the final budget (fine-tune seed `seed`) and score it on the test split."""
    result = prune_and_score(
        env.network, ratios, env.datamodule, training, seed, env.accuracy_unpruned, env.ignored_layers, env.recalibration_batches
    )
    net = result.model
    return {
        "test_accuracy": held_out_accuracy(net, env.datamodule, env.num_classes),
        "val_accuracy": result.accuracy,
        "flops": count_flops(net, env.input_shape),
        "params": count_params(net),
        "latency_ms": measure_latency(net, env.input_shape, batch_size=1, warmup=5, repeats=50),
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/prune_resnet18_mnist.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.25], help="FLOPs as a fraction of the unpruned")
    parser.add_argument("--evaluations", type=int, default=16, help="episodes per search (searched and random alike)")
    parser.add_argument("--out", default="bench/results/prune_your_model")
    parser.add_argument("--work", default="runs/bench_prune_your_model", help="search runs; finished ones are reused")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    env_kwargs = config["data"]["env_kwargs"]
    tolerance = float(env_kwargs.get("flops_tolerance", 0.03))
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"command": shlex.join([sys.executable.split("/")[-1], *sys.argv]), "targets": {}, "load": [os.getloadavg()[0]]}
    work = Path(args.work)
    for target in args.targets:
        env = PruneModelEnv(**{**env_kwargs, "flops_target": target})
        training = final_training(env.training, (config.get("export") or {}).get("final_training"))
        target_flops = target * env.flops_unpruned
        start = time.perf_counter()
        u = uniform_ratio(env, target_flops)
        uniform_seconds = time.perf_counter() - start
        start = time.perf_counter()
        g = global_ratio(env, target_flops, tolerance)
        global_seconds = time.perf_counter() - start
        per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
        for seed in args.seeds:
            for method, strategy in (("searched", "reinforce"), ("random", "nasprune.controller.RandomSearch")):
                records, seconds = search(config, strategy, seed, args.evaluations, target, work / f"{target}_{method}_{seed}")
                best = pick(records, target_flops, tolerance)
                scores = final_score(env, best["ratios"], training, seed)
                evaluated = sum(1 for r in records if not r.get("cached"))
                per_method[method].append({**scores, "seed": seed, "ratios": best["ratios"], "search_seconds": seconds,
                                           "evaluations": len(records), "distinct_evaluations": evaluated,
                                           "search_val_accuracy": best.get("accuracy")})
            per_method["uniform"].append({**final_score(env, env.ratio_map([u] * len(env.groups)), training, seed),
                                          "seed": seed, "ratio": u, "search_seconds": uniform_seconds})
            per_method["global"].append({**final_score(env, g, training, seed), "seed": seed, "ratio": g, "search_seconds": global_seconds})
        results["targets"][str(target)] = {"flops_unpruned": env.flops_unpruned, "target_flops": target_flops, "methods": per_method}
        for method in METHODS:
            runs = per_method[method]
            acc, std = mean_std([100 * r["test_accuracy"] for r in runs])
            rows.append({
                "target": f"{1 / target:g}×", "method": method, "acc": acc, "std": std,
                "flops": statistics.fmean(r["flops"] for r in runs), "params": statistics.fmean(r["params"] for r in runs),
                "latency": statistics.median(r["latency_ms"] for r in runs),
                "search": statistics.fmean(r["search_seconds"] for r in runs),
                "flops_unpruned": env.flops_unpruned,
            })
        results["targets"][str(target)]["win"] = verdict(per_method)
        results["unpruned"] = {"flops": env.flops_unpruned, "params": env.params_unpruned, "val_accuracy": env.accuracy_unpruned}
        results["final_training"] = dataclasses.asdict(training)
    results["load"].append(os.getloadavg()[0])
    Path(args.out + ".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    publish(table(rows, results, args), args.out + ".md")


def verdict(per_method: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Searched minus the best baseline (by mean test accuracy), paired by seed: mean and its standard error."""
    means = {m: statistics.fmean(r["test_accuracy"] for r in per_method[m]) for m in METHODS}
    best = max((m for m in METHODS if m != "searched"), key=means.get)
    diffs = [100 * (s["test_accuracy"] - b["test_accuracy"]) for s, b in zip(per_method["searched"], per_method[best])]
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    return {"best_baseline": best, "diff_mean": statistics.fmean(diffs), "diff_se": se, "at_least_as_accurate": statistics.fmean(diffs) >= 0}


def table(rows: list[dict[str, Any]], results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Prune your own model: ResNet-18 on MNIST, searched ratios vs baselines",
        "",
        f"`{results['command']}`",
        "",
        f"Unpruned: {results['unpruned']['flops'] / 1e6:.1f} MFLOPs, {results['unpruned']['params'] / 1e6:.2f} M params, "
        f"validation accuracy {100 * results['unpruned']['val_accuracy']:.2f}%. Seeds {args.seeds}; {args.evaluations} evaluations per search. "
        "Test accuracy: MNIST's 10,000 test images, mean ± std over seeds, each pick fine-tuned with the same final budget. "
        f"CPU, one torch thread, on a shared machine (1-minute load {results['load'][0]:.1f} at the start, {results['load'][1]:.1f} at the end).",
        "",
        "| target | method | test acc % | MFLOPs | FLOPs × fewer | params M | latency ms (b1) | search s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['method']} | {r['acc']:.2f} ± {r['std']:.2f} | {r['flops'] / 1e6:.2f} | "
            f"{r['flops_unpruned'] / r['flops']:.2f} | {r['params'] / 1e6:.2f} | {r['latency']:.2f} | {r['search']:.0f} |"
        )
    lines.append("")
    for target, entry in results["targets"].items():
        w = entry["win"]
        lines.append(
            f"- {1 / float(target):g}×: searched − {w['best_baseline']} (best baseline) = {w['diff_mean']:+.2f} ± {w['diff_se']:.2f} "
            f"points (mean ± SE of the paired difference)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
