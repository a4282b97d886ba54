"""Searched per-layer prune ratios vs one uniform ratio with the same FLOPs (AMC's claim), on MNIST.

For each search seed, the controller searches the per-layer ratios of `configs/mnist_ratios.yaml`'s
fixed architecture through the real CLI, rewarded (`TargetWindowReward`) with validation accuracy
inside ±`tolerance` of the uniform design's FLOPs and penalised by the distance outside that window.
The searched design is the episode with the highest reward — the best validation accuracy — among
those within the window; the test split plays no part in the choice.

Then the searched design and the uniform one are each trained again from scratch with the config's
training budget (the same for both, the same as in the search) for every child seed of
`--child-seeds` — the same seeds for both columns — and scored on MNIST's official test split
(10,000 images the search never saw). The search's own figure is the maximum over noisy episodes,
so it would flatter the searched design; the retrained mean does not. A child's training is
deterministic for a seed on CPU, so the uniform design is trained once per child seed and that
column repeats on every row.

    python bench/ratio_search.py                                        # 3 search seeds × 20 episodes, 3 child seeds
    python bench/ratio_search.py --seeds 0 --updates 1 --child-seeds 0  # a quick look
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from nasprune.child import ChildTraining, Design, SearchSpace, build_model, count_flops, evaluate_design, prune_child
from nasprune.child.data import ChildDataModule
from nasprune.cli import run
from nasprune.config import instantiate
from nasprune.export import held_out_accuracy
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path


def uniform_design(space: SearchSpace, ratio: float) -> Design:
    return space.design_from_actions([space.prune_ratios.index(ratio)] * len(space.decisions))


def pruned_flops(design: Design, datamodule: ChildDataModule, stem_width: int) -> int:
    net = build_model(design, datamodule.input_shape[0], datamodule.num_classes, stem_width)
    return count_flops(prune_child(net, datamodule.input_shape), datamodule.input_shape)


def search(config: str, seed: int, updates: int, target: int, tolerance: float, root: Path, resume: bool = False) -> list[dict]:
    """One search through the CLI on a copy of `config` with the reward's target and window set;
    with `resume`, the killed search under `root` continues from its last checkpoint.

    (A copy, because a dotted override into `env_kwargs`, a plain dict, would replace the reward.)
    """
    settings = yaml.safe_load(Path(config).read_text())
    reward = settings["data"]["env_kwargs"]["reward"]
    if not reward["class_path"].endswith("TargetWindowReward"):
        raise SystemExit(f"{config}: the benchmark sets a TargetWindowReward's target; the config has {reward['class_path']}")
    reward["init_args"].update(target=target, tolerance=tolerance)
    root.mkdir(parents=True, exist_ok=True)
    copy = root / "config.yaml"
    copy.write_text(yaml.safe_dump(settings))
    run([
        "fit",
        "-c",
        str(copy),
        f"--seed_everything={seed}",
        f"--trainer.max_steps={updates}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--export.enabled=false",  # the search alone: no final training of its best design
        *(["--ckpt_path=last"] if resume else []),
    ])
    (history,) = root.glob("lightning_logs/version_*/history.jsonl")
    return [json.loads(line) for line in history.read_text().splitlines()]


def test_accuracies(
    design: Design, datamodule: ChildDataModule, training: ChildTraining, stem_width: int, child_seeds: list[int]
) -> list[float]:
    """`design` trained, pruned and fine-tuned once per child seed; each net's accuracy on the test split."""
    accuracies = []
    for child_seed in child_seeds:
        result = evaluate_design(design, datamodule, training, stem_width, child_seed)
        accuracies.append(held_out_accuracy(result.model, datamodule, datamodule.num_classes))
    return accuracies


def percent(values: list[float]) -> str:
    return f"**{100 * statistics.mean(values):.2f}** ({', '.join(f'{100 * v:.2f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/mnist_ratios.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds")
    parser.add_argument("--updates", type=int, default=5, help="controller updates per search (× episodes_per_update episodes)")
    parser.add_argument("--child-seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="seeds of the retrainings")
    parser.add_argument("--uniform", type=float, default=0.5, help="the uniform ratio compared against")
    parser.add_argument("--tolerance", type=float, default=0.05, help="FLOPs within ±tolerance of the uniform design's")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    parser.add_argument("--out", default="bench/results/ratio_search.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env_kwargs = yaml.safe_load(Path(args.config).read_text())["data"]["env_kwargs"]
    space = SearchSpace.from_config(env_kwargs["search_space"])
    datamodule = instantiate(env_kwargs["datamodule"], ChildDataModule, "datamodule")
    training = ChildTraining.from_config(env_kwargs["training"])
    uniform = uniform_design(space, args.uniform)
    target = pruned_flops(uniform, datamodule, space.stem_width)
    low, high = (1 - args.tolerance) * target, (1 + args.tolerance) * target

    start = time.perf_counter()
    uniform_acc = test_accuracies(uniform, datamodule, training, space.stem_width, args.child_seeds)
    rows, searched_means, differences = [], [], []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            history = search(args.config, seed, args.updates, target, args.tolerance, Path(tmp) / "run")
        within = [low <= h.get("flops", -1) <= high for h in history]
        half = len(history) // 2
        share = f"{sum(within)} / {len(history)} ({sum(within[:half])} in the first half, {sum(within[half:])} in the second)"
        matching = [h for h, ok in zip(history, within) if ok]
        if not matching:
            rows.append(f"| {seed} | {share} | none | | | | | |")
            continue
        best = max(matching, key=lambda h: h["reward"])
        found = Design.from_dict(best["design"])
        searched_acc = test_accuracies(found, datamodule, training, space.stem_width, args.child_seeds)
        searched_means.append(statistics.mean(searched_acc))
        differences.extend(s - u for s, u in zip(searched_acc, uniform_acc))
        ratios = ", ".join(f"{layer.prune_ratio:g}" for layer in found.layers if layer.width is not None)
        flops = best["flops"]
        rows.append(
            f"| {seed} | {share} | {ratios} | {flops:,} ({flops / target - 1:+.1%}) | {100 * best['accuracy']:.2f} | "
            f"{percent(searched_acc)} | {percent(uniform_acc)} | {100 * (searched_means[-1] - statistics.mean(uniform_acc)):+.2f} |"
        )
    minutes = (time.perf_counter() - start) / 60

    command = "python " + shlex.join(sys.argv)
    uniform_text = str(uniform).replace(" | ", " → ")
    if searched_means:
        spread = statistics.stdev(differences) if len(differences) > 1 else float("nan")
        summary = (
            f"Mean over {len(searched_means)} search seeds × {len(args.child_seeds)} child seeds (test accuracy): "
            f"searched **{100 * statistics.mean(searched_means):.2f}%**, uniform **{100 * statistics.mean(uniform_acc):.2f}%**, "
            f"difference **{100 * statistics.mean(differences):+.2f} points** (the {len(differences)} paired differences, "
            f"same child seed: standard deviation {100 * spread:.2f}, min {100 * min(differences):+.2f}, "
            f"max {100 * max(differences):+.2f})."
        )
    else:
        summary = "No search found a design within the FLOPs tolerance."
    lines = [
        f"Searched vs uniform prune ratios on `{args.config}` (`{uniform_text}`, uniform {args.uniform}: {target:,} FLOPs; "
        f"window ±{args.tolerance:.0%}; {args.updates} updates per search; child seeds {', '.join(map(str, args.child_seeds))}; "
        f"torch threads {args.threads}; {minutes:.1f} min). Command: `{command}`",
        "",
        f"| search seed | episodes within ±{args.tolerance:.0%} FLOPs | searched ratios | searched FLOPs (vs uniform) | "
        "validation accuracy in the search (%) | searched, retrained: test accuracy (%) | uniform, retrained: test accuracy (%) | "
        "difference (points) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        summary,
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
