"""Pruning pays: a fixed 4-layer conv design on MNIST, every layer pruned at 0.5, against itself unpruned.

Both go through `evaluate_design` with the same schedule (train `--epochs`, then prune — a no-op
at ratio 0 — and fine-tune `--finetune-epochs`), so both get the same number of optimizer steps;
with `--distill-alpha` > 0 the pruned model's fine-tuning distils from the unpruned trained child (T = 4).
Latency: on one torch thread by default, median of repeated timed forwards at `--batch-size` after warm-up, the two models
measured in alternating rounds so that a busy machine slows both alike; the table shows the
median over rounds. Targets: FLOPs down ≥ 70%, latency ≥ 2× faster, accuracy within 1 point.

    python bench/pruning_pays.py                       # ≈ 5 minutes on 2 busy cores
    python bench/pruning_pays.py --train-subset 2000   # a quick look
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from dataclasses import replace

import torch

from nasprune.child import (
    ChildTraining,
    Design,
    LayerDesign,
    MNISTDataModule,
    evaluate_design,
    measure_latency,
)
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

STEM_WIDTH = 8


def design(ratio: float) -> Design:
    return Design((
        LayerDesign("conv3x3", 32, ratio),
        LayerDesign("conv3x3", 64, ratio, "stride"),
        LayerDesign("conv3x3", 128, ratio),
        LayerDesign("conv3x3", 128, ratio, "stride"),
    ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--train-subset", type=int, default=8000)
    parser.add_argument("--val-subset", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-lr", type=float, default=0.003)
    parser.add_argument("--distill-alpha", type=float, default=0.0, help="distillation weight when fine-tuning the pruned model (0: off)")
    parser.add_argument("--batch-size", type=int, default=64, help="latency batch size")
    parser.add_argument("--rounds", type=int, default=5, help="alternating latency rounds")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: on a shared machine a multi-threaded op waits for every core)"
    )
    parser.add_argument("--out", default="bench/results/pruning_pays.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    datamodule = MNISTDataModule(root=args.root, train_subset=args.train_subset, val_subset=args.val_subset)
    datamodule.prepare_data()
    training = ChildTraining(epochs=args.epochs, finetune_epochs=args.finetune_epochs, lr=0.003, finetune_lr=args.finetune_lr)
    distilled = replace(training, distill_alpha=args.distill_alpha)
    results = {
        "unpruned": evaluate_design(design(0.0), datamodule, training, STEM_WIDTH, args.seed),
        "pruned": evaluate_design(design(args.ratio), datamodule, distilled, STEM_WIDTH, args.seed),
    }

    latencies: dict[str, list[float]] = {name: [] for name in results}
    for _ in range(args.rounds):
        for name, result in results.items():
            latencies[name].append(measure_latency(result.model, datamodule.input_shape, args.batch_size, warmup=3, repeats=args.repeats))
    latency = {name: statistics.median(values) for name, values in latencies.items()}

    unpruned, pruned = results["unpruned"], results["pruned"]
    rows = [
        ("design", f"`{unpruned.model.design}`".replace(" | ", " → "), f"`{pruned.model.design}`".replace(" | ", " → "), ""),
        ("validation accuracy (%)", f"{100 * unpruned.accuracy:.2f}", f"{100 * pruned.accuracy:.2f}", f"{100 * (pruned.accuracy - unpruned.accuracy):+.2f} points"),
        ("accuracy before fine-tuning (%)", f"{100 * unpruned.accuracy_unpruned:.2f}", f"{100 * pruned.accuracy_unpruned:.2f} (before pruning)", ""),
        ("FLOPs per example", f"{unpruned.flops:,}", f"{pruned.flops:,}", f"{100 * (1 - pruned.flops / unpruned.flops):.1f}% fewer"),
        ("parameters", f"{unpruned.params:,}", f"{pruned.params:,}", f"{100 * (1 - pruned.params / unpruned.params):.1f}% fewer"),
        ("size (bytes)", f"{unpruned.size_bytes:,}", f"{pruned.size_bytes:,}", f"{unpruned.size_bytes / pruned.size_bytes:.2f}× smaller"),
        (f"CPU latency, batch {args.batch_size} (ms)", f"{latency['unpruned']:.2f}", f"{latency['pruned']:.2f}", f"{latency['unpruned'] / latency['pruned']:.2f}× faster"),
        ("train + fine-tune time (s)", f"{unpruned.seconds['train'] + unpruned.seconds['finetune']:.1f}", f"{pruned.seconds['train'] + pruned.seconds['finetune']:.1f}", ""),
    ]
    command = "python " + shlex.join(sys.argv)
    lines = [
        f"Pruning pays on MNIST ({args.train_subset:,} training / {args.val_subset:,} validation examples, "
        f"{args.epochs} + {args.finetune_epochs} epochs, ratio {args.ratio} in every layer, stem {STEM_WIDTH}, "
        f"pruned fine-tuning distilled with α = {args.distill_alpha}, "
        f"torch threads {torch.get_num_threads()}, latency median of {args.rounds} alternating rounds × {args.repeats} forwards). "
        f"Command: `{command}`",
        "",
        "| | unpruned | pruned | change |",
        "|---|---|---|---|",
        *(f"| {name} | {a} | {b} | {change} |" for name, a, b, change in rows),
        "",
        f"Latency per round (ms): unpruned {', '.join(f'{v:.2f}' for v in latencies['unpruned'])}; "
        f"pruned {', '.join(f'{v:.2f}' for v in latencies['pruned'])}.",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
