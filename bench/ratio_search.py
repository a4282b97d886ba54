"""Searched per-layer prune ratios vs one uniform ratio with the same FLOPs (AMC's claim), on MNIST.

For each seed: the controller searches the per-layer ratios of `configs/mnist_ratios.yaml`'s fixed
architecture through the real CLI, rewarded with validation accuracy under a hard FLOPs budget
of 1.05 × the FLOPs of the uniform ratio. The searched design is the best-accuracy episode whose
FLOPs are within ±5% of the uniform design's. Then both designs are trained again from scratch
with the same budget (the config's epochs and fine-tuning) and a fresh child seed, and their
validation accuracies compared: the search's own figure is the maximum over noisy episodes,
so it would flatter the searched design.

    python bench/ratio_search.py                              # 3 seeds × 32 episodes
    python bench/ratio_search.py --seeds 0 --updates 2        # a quick look
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
from nasprune.cli import run
from nasprune.config import instantiate
from nasprune.child.data import ChildDataModule


def uniform_design(space: SearchSpace, ratio: float) -> Design:
    return space.design_from_actions([space.prune_ratios.index(ratio)] * len(space.decisions))


def pruned_flops(design: Design, datamodule: ChildDataModule, stem_width: int) -> int:
    net = build_model(design, datamodule.input_shape[0], datamodule.num_classes, stem_width)
    return count_flops(prune_child(net, datamodule.input_shape), datamodule.input_shape)


def search(config: str, seed: int, updates: int, budget: float, root: Path) -> list[dict]:
    """One search through the CLI on a copy of `config` with the reward's budget set.

    (A copy, because a dotted override into `env_kwargs`, a plain dict, would replace the reward.)
    """
    settings = yaml.safe_load(Path(config).read_text())
    settings["data"]["env_kwargs"]["reward"]["init_args"]["budget"] = budget
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
    ])
    (history,) = root.glob("lightning_logs/version_*/history.jsonl")
    return [json.loads(line) for line in history.read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="configs/mnist_ratios.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--updates", type=int, default=8, help="controller updates per seed (× episodes_per_update episodes)")
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

    rows, searched_acc, uniform_acc = [], [], []
    start = time.perf_counter()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            history = search(args.config, seed, args.updates, high, Path(tmp) / "run")
        matching = [h for h in history if "flops" in h and low <= h["flops"] <= high]
        if not matching:
            rows.append(f"| {seed} | none of {len(history)} episodes within ±{args.tolerance:.0%} | | | | |")
            continue
        best = max(matching, key=lambda h: h["accuracy"])
        found = Design.from_dict(best["design"])
        child_seed = 1000 + seed
        found_result = evaluate_design(found, datamodule, training, space.stem_width, child_seed)
        uniform_result = evaluate_design(uniform, datamodule, training, space.stem_width, child_seed)
        searched_acc.append(found_result.accuracy)
        uniform_acc.append(uniform_result.accuracy)
        ratios = ", ".join(f"{layer.prune_ratio:g}" for layer in found.layers if layer.width is not None)
        rows.append(
            f"| {seed} | {len(matching)} / {len(history)} | {ratios} | {found_result.flops:,} ({found_result.flops / target - 1:+.1%}) | "
            f"{100 * best['accuracy']:.2f} | **{100 * found_result.accuracy:.2f}** | **{100 * uniform_result.accuracy:.2f}** |"
        )
    minutes = (time.perf_counter() - start) / 60

    command = "python " + shlex.join(sys.argv)
    uniform_text = str(uniform).replace(" | ", " → ")
    mean = (
        f"Mean over {len(searched_acc)} seeds: searched **{100 * statistics.mean(searched_acc):.2f}%**, "
        f"uniform **{100 * statistics.mean(uniform_acc):.2f}%** "
        f"(difference {100 * (statistics.mean(searched_acc) - statistics.mean(uniform_acc)):+.2f} points)."
        if searched_acc
        else "No seed found a design within the FLOPs tolerance."
    )
    lines = [
        f"Searched vs uniform prune ratios on `{args.config}` (`{uniform_text}`, uniform {args.uniform}: {target:,} FLOPs; "
        f"{args.updates} updates per seed, budget {high:,.0f} FLOPs; {minutes:.1f} min). Command: `{command}`",
        "",
        "| seed | episodes within ±5% FLOPs | searched ratios | searched FLOPs (vs uniform) | accuracy in the search (%) | searched, retrained (%) | uniform, retrained (%) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        mean,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
