"""Ship it small: float vs static int8 in ONNX Runtime, and the search with per-layer bit-widths vs without.

Part 1, float vs int8: the fixed 4-layer design of `bench/pruning_pays.py` pruned at 0.5 (trained as
there) and the best designs of the searches of part 2 (retrained with `--final-epochs`). Each is
exported to ONNX and statically quantized to int8 (`nasprune.child.deploy`: QDQ, per-channel int8
weights, uint8 activations calibrated on `--calibration` training images). Both files are measured in
ONNX Runtime: accuracy on the 10,000 MNIST test images, file size, and latency at batch 1 and 64 on
`--threads` threads — float and int8 timed in alternating rounds (median of `--repeats` runs after
warm-up, then the median over `--rounds`), so a busy machine slows both alike.
Targets: int8 ≥ 3.5× smaller, ≥ 1.5× faster at batch 64, test accuracy within 0.5 points.

Part 2, bit-widths at equal size: `configs/mnist_bits.yaml` searched with `bits: [8, 4]` and with no
bit-width decision (float layers), both rewarded by the same ±`--tolerance` window around
`--target` size_bits, `--updates` controller updates per search, per search seed. The best design
within the window (by search reward) is retrained on child seed 1000 and scored on the test split.

    python bench/deploy.py                  # ≈ 25 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nasprune.child import ChildTraining, Design, MNISTDataModule, evaluate_design
from nasprune.child.deploy import calibration_images, runtime_accuracy, runtime_latency_ms, runtime_name, session, write_float_and_int8
from nasprune.config import instantiate
from nasprune.export import held_out_accuracy
from pruning_pays import STEM_WIDTH, design  # bench/ scripts import each other
from publish import publish
from ratio_search import search

BATCHES = (1, 64)


def float_vs_int8(net: nn.Module, datamodule: Any, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Both ONNX files of `net`: test accuracy, bytes, and latency per batch size in alternating rounds."""
    datamodule.setup("fit")
    shape = tuple(datamodule.input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_float_and_int8(net.cpu().eval(), Path(tmp), shape, calibration_images(datamodule.train_dataloader(), args.calibration))
        runners = {kind: session(path, args.threads) for kind, path in paths.items()}
        datamodule.setup("test")
        rows = {kind: {"bytes": path.stat().st_size, "accuracy": runtime_accuracy(runners[kind], datamodule.test_dataloader())} for kind, path in paths.items()}
    for batch in BATCHES:
        rounds: dict[str, list[float]] = {kind: [] for kind in runners}
        for _ in range(args.rounds):
            for kind, runner in runners.items():
                rounds[kind].append(runtime_latency_ms(runner, shape, batch, warmup=5, repeats=args.repeats))
        for kind in runners:
            rows[kind][f"batch_{batch}"] = statistics.median(rounds[kind])
    return rows


def deploy_lines(name: str, rows: dict[str, dict[str, Any]]) -> tuple[list[str], dict[str, bool]]:
    fl, q = rows["float"], rows["int8"]
    smaller, faster = fl["bytes"] / q["bytes"], fl["batch_64"] / q["batch_64"]
    drop = 100 * (fl["accuracy"] - q["accuracy"])
    met = {"≥ 3.5× smaller": smaller >= 3.5, "≥ 1.5× faster at batch 64": faster >= 1.5, "accuracy within 0.5 points": drop <= 0.5}
    lines = [
        f"| {name} | {kind} | {100 * r['accuracy']:.2f} | {r['bytes']:,} | {r['batch_1']:.3f} | {r['batch_64']:.2f} |"
        for kind, r in rows.items()
    ]
    lines.append(
        f"| | **int8 vs float** | **{-drop:+.2f} points** | **{smaller:.2f}× smaller** | {fl['batch_1'] / q['batch_1']:.2f}× faster | "
        f"**{faster:.2f}× faster** |"
    )
    return lines, met


def searched(args: argparse.Namespace, bits: list[int], seed: int, root: Path) -> list[dict]:
    """One search of `args.config` with the bit-width choices `bits` ([]: float layers)."""
    settings = yaml.safe_load(Path(args.config).read_text())
    settings["data"]["env_kwargs"]["search_space"]["bits"] = bits
    root.mkdir(parents=True, exist_ok=True)
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump(settings))
    return search(str(config), seed, args.updates, args.target, args.tolerance, root / "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data")
    parser.add_argument("-c", "--config", default="configs/mnist_bits.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds")
    parser.add_argument("--updates", type=int, default=2, help="controller updates per search (× episodes_per_update episodes)")
    parser.add_argument("--target", type=int, default=50_000, help="the size_bits budget of both searches")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--final-epochs", type=int, nargs=2, default=[3, 2], help="epochs, fine-tune epochs of the retrained best designs")
    parser.add_argument("--calibration", type=int, default=256, help="training images that calibrate the int8 activations")
    parser.add_argument("--rounds", type=int, default=5, help="alternating latency rounds")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per round")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (1 on a shared machine)")
    parser.add_argument("--out", default="bench/results/deploy.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    # Part 2 first: its best designs join the float-vs-int8 table.
    env_kwargs = yaml.safe_load(Path(args.config).read_text())["data"]["env_kwargs"]
    search_data = instantiate(env_kwargs["datamodule"], MNISTDataModule, "datamodule")
    retraining = ChildTraining.from_config({**env_kwargs["training"], "epochs": args.final_epochs[0], "finetune_epochs": args.final_epochs[1]})
    stem = env_kwargs["search_space"].get("stem_width", 16)
    low, high = (1 - args.tolerance) * args.target, (1 + args.tolerance) * args.target
    variants = {"bits [8, 4]": [8, 4], "no bits (float)": []}
    search_rows, accuracies, best_nets = [], {name: [] for name in variants}, {}
    for seed in args.seeds:
        for name, bits in variants.items():
            with tempfile.TemporaryDirectory() as tmp:
                history = searched(args, bits, seed, Path(tmp))
            within = [h for h in history if low <= h.get("size_bits", -1) <= high]
            if not within:
                search_rows.append(f"| {seed} | {name} | 0 / {len(history)} | none | | | |")
                continue
            best = max(within, key=lambda h: h["reward"])
            result = evaluate_design(Design.from_dict(best["design"]), search_data, retraining, stem, seed=1000)
            test = held_out_accuracy(result.model, search_data, search_data.num_classes)
            accuracies[name].append(test)
            if seed == args.seeds[0]:
                best_nets[f"best of the {name} search (seed {seed})"] = result.model
            search_rows.append(
                f"| {seed} | {name} | {len(within)} / {len(history)} | `{best['design_str'].replace(' | ', ' → ')}` | {best['size_bits']:,} | "
                f"{100 * best['accuracy']:.2f} | {100 * test:.2f} |"
            )

    fixed_data = MNISTDataModule(root=args.root, train_subset=8000, val_subset=2000)
    fixed_data.prepare_data()
    fixed_training = ChildTraining(epochs=2, finetune_epochs=2, lr=0.003, finetune_lr=0.003)  # pruning_pays.py's defaults
    fixed = evaluate_design(design(0.5), fixed_data, fixed_training, STEM_WIDTH, seed=0)
    table, targets = [], {}
    for name, (net, data) in {"pruning_pays 4-layer design @ 0.5": (fixed.model, fixed_data), **{k: (n, search_data) for k, n in best_nets.items()}}.items():
        lines, met = deploy_lines(name, float_vs_int8(net, data, args))
        table += lines
        targets[name] = met
    minutes = (time.perf_counter() - start) / 60

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = "python " + shlex.join(sys.argv)
    target_lines = [f"- {name}: " + ", ".join(f"{goal} {'**met**' if ok else '**missed**'}" for goal, ok in met.items()) for name, met in targets.items()]
    means = {name: (f"{100 * statistics.mean(v):.2f}% over {len(v)} seeds" if v else "no design in the window") for name, v in accuracies.items()}
    lines = [
        f"Float vs static int8 on MNIST, both run by {runtime_name()} on {args.threads} thread(s); accuracy on the 10,000 test "
        f"images; int8 calibrated on {args.calibration} training images; latency: median over {args.rounds} alternating rounds "
        f"of the median of {args.repeats} runs. {minutes:.1f} min on a shared machine (`{load}`). Command: `{command}`",
        "",
        "| model | file | test accuracy (%) | file size (bytes) | latency batch 1 (ms) | latency batch 64 (ms) |",
        "|---|---|---|---|---|---|",
        *table,
        "",
        "Targets:",
        *target_lines,
        "",
        f"Per-layer bit-widths at equal size: `{args.config}` searched with and without a bit-width decision, reward "
        f"validation accuracy within ±{args.tolerance:.0%} of {args.target:,} size_bits; {args.updates} updates per search; "
        f"best in-window design retrained ({args.final_epochs[0]} + {args.final_epochs[1]} epochs, child seed 1000).",
        "",
        "| search seed | variant | episodes in the window | best design in the window | its size_bits | search validation accuracy (%) | "
        "retrained test accuracy (%) |",
        "|---|---|---|---|---|---|---|",
        *search_rows,
        "",
        "Mean retrained test accuracy: " + "; ".join(f"{name}: **{text}**" for name, text in means.items()) + ".",
        "",
    ]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
