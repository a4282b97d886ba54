"""Ship it small: float vs static int8 in ONNX Runtime, and the search with per-layer bit-widths vs without.

Part 1, float vs int8: the fixed 4-layer design of `bench/pruning_pays.py` pruned at 0.5 (trained as
there) and the best design of every search of part 2 (retrained as below, first child seed). Each is exported to ONNX and statically quantized to int8 (`nasprune.child.deploy`: QDQ,
per-channel int8 weights, uint8 activations calibrated on `--calibration` training images). Both files
are measured in ONNX Runtime: accuracy on the 10,000 MNIST test images, file size, and latency at
batch 1 and 64 on `--threads` threads — float and int8 timed in alternating rounds, each on fresh
sessions (median of `--repeats` runs after warm-up, then the median over `--rounds`), so a busy
machine slows both alike.
Targets: int8 ≥ 3.5× smaller, ≥ 1.5× faster at batch 64, test accuracy within 0.5 points.

Part 2, bit-widths at equal size: `configs/mnist_bits.yaml` searched with `bits: [8, 4]` and with no
bit-width decision (float layers), both rewarded by the same `TargetWindowReward` (validation
accuracy within ±`--tolerance` of `--target` size_bits) with the env's `mask_budget` on (choices that
cannot end in the window are masked, so every episode is a candidate), `--updates` controller updates
per search, per search seed. The best design within the window (by search reward) is retrained on
`--final-train-subset` images for `--final-epochs` once per child seed and scored on the test split.

Every search, retraining and deployment is kept in `bench/results/deploy.json` (beside the markdown,
under a key of the settings), so a killed run continues where it stopped; `--report` writes the
table of whatever is there without measuring. Slices (`--seeds`, `--variants`, `--no-fixed`) run in
parallel processes add their parts to the same file.

    OMP_NUM_THREADS=1 python bench/deploy.py    # ≈ 60 min of one free core
    for s in 0 1; do for v in bits float; do                  # or four processes, then --report
      OMP_NUM_THREADS=1 python bench/deploy.py --seeds $s --variants $v $([ $s$v = 0bits ] || echo --no-fixed) &
    done; done; wait
    python bench/deploy.py --report
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nasprune.child import ChildTraining, Design, LayerDesign, MNISTDataModule, SearchSpace, build_model, evaluate_design, prune_child
from nasprune.child.metrics import count_params
from nasprune.child.quantize import size_bits
from nasprune.child.deploy import calibration_images, runtime_accuracy, runtime_latency_ms, runtime_name, session, write_float_and_int8
from nasprune.config import instantiate
from nasprune.export import held_out_accuracy
from nasprune.files import atomic_write
from pruning_pays import STEM_WIDTH, design  # bench/ scripts import each other
from publish import publish
from ratio_search import search

BATCHES = (1, 64)
# --variants key: (name in the results and tables, the search space's bit-width choices; []: float layers)
VARIANTS = {"bits": ("bits [8, 4]", [8, 4]), "float": ("no bits (float)", [])}


def float_vs_int8(net: nn.Module, datamodule: Any, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Both ONNX files of `net`: test accuracy, bytes, and latency per batch size in alternating rounds.

    Each round opens fresh sessions: on this machine one int8 session of a file ran a batch of 64 in
    9.3 ms and others, of the same file in the same process, in 12.3–13.2 ms, so the rounds sample
    the sessions as well as the runs.
    """
    datamodule.setup("fit")
    shape = tuple(datamodule.input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_float_and_int8(net.cpu().eval(), Path(tmp), shape, calibration_images(datamodule.train_dataloader(), args.calibration))
        datamodule.setup("test")
        rows = {kind: {"bytes": path.stat().st_size, "accuracy": runtime_accuracy(session(path, args.threads), datamodule.test_dataloader())} for kind, path in paths.items()}
        rounds: dict[tuple[str, int], list[float]] = {(kind, batch): [] for kind in paths for batch in BATCHES}
        for _ in range(args.rounds):
            runners = {kind: session(path, args.threads) for kind, path in paths.items()}
            for batch in BATCHES:
                for kind, runner in runners.items():
                    rounds[kind, batch].append(runtime_latency_ms(runner, shape, batch, warmup=5, repeats=args.repeats))
    for (kind, batch), times in rounds.items():
        rows[kind][f"batch_{batch}"] = statistics.median(times)
        rows[kind][f"batch_{batch}_rounds"] = times
    return rows


def fixed_lines(fixed: dict[str, Any] | None) -> list[str]:
    """How the fixed design was trained, and its batch-64 latency round by round (when recorded)."""
    if fixed is None:
        return []
    t = FIXED_TRAINING
    line = f"The fixed design: trained on 8,000 images for {t.epochs} + {t.finetune_epochs} epochs at {t.lr} ({t.lr_scheduler})."
    float_rounds, int8_rounds = (fixed["deploy"][kind].get("batch_64_rounds", []) for kind in ("float", "int8"))
    if float_rounds:
        line += " Its batch-64 latency round by round (float / int8 ms, speed-up): "
        line += "; ".join(f"{f:.2f} / {q:.2f} ({f / q:.2f}×)" for f, q in zip(float_rounds, int8_rounds)) + "."
    return [line, ""]


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


def config_env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The config's env settings with its datamodule reading `--root`, so every part of the benchmark reads one copy of MNIST."""
    env_kwargs: dict[str, Any] = yaml.safe_load(Path(args.config).read_text())["data"]["env_kwargs"]
    env_kwargs["datamodule"]["init_args"]["root"] = args.root
    return env_kwargs


def searched(args: argparse.Namespace, bits: list[int], seed: int, root: Path) -> list[dict]:
    """One search of `args.config` with the bit-width choices `bits` ([]: float layers), run under `root`:
    a search killed after its first controller update continues from its last checkpoint there."""
    resume = any((root / "run").glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    if not resume:
        shutil.rmtree(root, ignore_errors=True)  # nothing to continue: a fresh run, not a second version_N
    settings = yaml.safe_load(Path(args.config).read_text())
    settings["data"]["env_kwargs"] = config_env_kwargs(args)
    settings["data"]["env_kwargs"]["search_space"]["bits"] = bits
    settings["data"]["env_kwargs"]["mask_budget"] = args.mask_budget
    root.mkdir(parents=True, exist_ok=True)
    config = root / "search.yaml"
    config.write_text(yaml.safe_dump(settings))
    return search(str(config), seed, args.updates, args.target, args.tolerance, root / "run", resume)


class Results:
    """The benchmark's measurements, kept in a JSON beside the markdown under a key of the settings that
    made them, so a killed run continues where it stopped and changed settings start afresh. Several
    processes may share the file (one per `--seeds`/`--variants` slice): each part is added to what the
    file holds at that moment, under a lock, so none overwrites another's parts."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.key = json.dumps(settings, sort_keys=True)
        self.mine: dict[str, Any] = self._read().get(self.key, {})

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if name not in self.mine:
            start = time.perf_counter()
            self.mine[name] = {**compute(), "seconds": time.perf_counter() - start, "load": os.getloadavg()[0]}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.with_suffix(".lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                everything = self._read()
                everything.setdefault(self.key, {})[name] = self.mine[name]
                atomic_write(self.path, json.dumps(everything, indent=1))
        return self.mine[name]


def search_entry(args: argparse.Namespace, bits: list[int], seed: int, root: Path) -> dict[str, Any]:
    """A search: how many episodes landed in the window, and the best design within it (by search reward)."""
    low, high = (1 - args.tolerance) * args.target, (1 + args.tolerance) * args.target
    history = searched(args, bits, seed, root)
    within = [h for h in history if low <= h.get("size_bits", -1) <= high]
    entry: dict[str, Any] = {"episodes": len(history), "within": len(within), "distinct": len({h["design_str"] for h in history if "design_str" in h})}
    if within:
        best = max(within, key=lambda h: h["reward"])
        entry["best"] = {key: best[key] for key in ("design", "design_str", "size_bits", "params", "accuracy")}
    return entry


def retrain_entry(args: argparse.Namespace, design_dict: dict[str, Any], child_seed: int, deploy: bool) -> dict[str, Any]:
    """A searched design trained again on `--final-train-subset` images and scored on the test split;
    with `deploy`, also measured as float and int8."""
    env_kwargs = config_env_kwargs(args)
    datamodule_config = copy.deepcopy(env_kwargs["datamodule"])
    datamodule_config["init_args"]["train_subset"] = args.final_train_subset
    final_data = instantiate(datamodule_config, MNISTDataModule, "datamodule")
    retraining = ChildTraining.from_config({**env_kwargs["training"], "epochs": args.final_epochs[0], "finetune_epochs": args.final_epochs[1]})
    stem = env_kwargs["search_space"].get("stem_width", 16)
    result = evaluate_design(Design.from_dict(design_dict), final_data, retraining, stem, seed=child_seed)
    entry: dict[str, Any] = {"test": held_out_accuracy(result.model, final_data, final_data.num_classes)}
    if deploy:
        entry["deploy"] = float_vs_int8(result.model, final_data, args)
    return entry


# pruning_pays.py's epochs and learning rates, annealed to zero (cosine) as a model one ships is: at a
# constant rate the last batches leave the weights wherever they land (this net's validation accuracy
# was 91.3% at a constant 0.003 and 97.0% at 0.001), and the int8 model of so unsettled a net gained
# or lost up to a point and a half with the draw of its 256 calibration images.
FIXED_TRAINING = ChildTraining(epochs=2, finetune_epochs=2, lr=0.003, finetune_lr=0.003, lr_scheduler="cosine")


def fixed_design(args: argparse.Namespace) -> dict[str, Any]:
    data = MNISTDataModule(root=args.root, train_subset=8000, val_subset=2000)
    data.prepare_data()
    result = evaluate_design(design(0.5), data, FIXED_TRAINING, STEM_WIDTH, seed=0)
    return {"deploy": float_vs_int8(result.model, data, args), "params": count_params(result.model)}


# Designs within the searches' window (500,000 size_bits ± 25%) of different structure, for `--structure`.
STRUCTURES = {
    "convolutions, 4/8/4 bits": Design((LayerDesign("conv3x3", 64, bits=4), LayerDesign("conv3x3", 64, 0, "stride", bits=8), LayerDesign("conv3x3", 64, bits=4))),
    "convolutions, 8/4/8 bits": Design((LayerDesign("conv3x3", 32, bits=8), LayerDesign("conv3x3", 64, 0, "stride", bits=4), LayerDesign("conv3x3", 64, 0, "stride", bits=8))),
    "convolutions, float": Design((LayerDesign("conv3x3", 32), LayerDesign("conv3x3", 32, 0.5, "stride"), LayerDesign("conv3x3", 32))),
    "depthwise-separable, float": Design((LayerDesign("sepconv3x3", 64), LayerDesign("sepconv3x3", 64, 0, "stride"), LayerDesign("sepconv3x3", 64))),
}


def structure_table(args: argparse.Namespace) -> None:
    """Float vs int8 file size and latency by a design's structure, at the searches' budget. The nets are
    pruned but untrained (size and speed do not depend on the weights' values; accuracy is not shown)."""
    space = SearchSpace.from_config(yaml.safe_load(Path(args.config).read_text())["data"]["env_kwargs"]["search_space"])
    data = MNISTDataModule(root=args.root, train_subset=args.calibration, val_subset=1000)
    data.prepare_data()
    shape = tuple(data.input_shape)
    rows = []
    for name, found in STRUCTURES.items():
        torch.manual_seed(0)
        net = prune_child(build_model(found, shape[0], data.num_classes, space.stem_width), shape)
        measured = float_vs_int8(net, data, args)
        fl, q = measured["float"], measured["int8"]
        rows.append(
            f"| {name} | `{str(found).replace(' | ', ' → ')}` | {count_params(net):,} | {size_bits(net):,} | {fl['bytes']:,} → {q['bytes']:,} "
            f"(**{fl['bytes'] / q['bytes']:.2f}×**) | {fl['batch_1']:.3f} → {q['batch_1']:.3f} ({fl['batch_1'] / q['batch_1']:.2f}×) | "
            f"{fl['batch_64']:.2f} → {q['batch_64']:.2f} (**{fl['batch_64'] / q['batch_64']:.2f}×**) |"
        )
    lines = [
        f"Float → static int8 by structure, designs within ±25% of 500,000 size_bits from `{args.config}`'s space, pruned but "
        f"untrained; {runtime_name()} on {args.threads} thread(s), median over {args.rounds} alternating rounds of the median of "
        f"{args.repeats} runs, on a shared 2-core machine (1-minute load average {os.getloadavg()[0]:.1f}). "
        f"Command: `OMP_NUM_THREADS=1 python {shlex.join(sys.argv)}`",
        "",
        "| structure | design | params | size_bits | file size (bytes) | latency batch 1 (ms) | latency batch 64 (ms) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    publish("\n".join(lines), Path(args.out).with_name("deploy_structure.md"))


def mean_std(values: list[float]) -> str:
    spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.mean(values):.2f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data", help="the MNIST folder of every part (replaces the config's datamodule root)")
    parser.add_argument("-c", "--config", default="configs/mnist_bits.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds")
    parser.add_argument("--updates", type=int, default=4, help="controller updates per search (× episodes_per_update episodes)")
    parser.add_argument("--target", type=int, default=500_000, help="the size_bits budget of both searches")
    parser.add_argument("--tolerance", type=float, default=0.25)
    parser.add_argument("--mask-budget", action=argparse.BooleanOptionalAction, default=True, help="the env's mask_budget in both searches")
    parser.add_argument("--final-epochs", type=int, nargs=2, default=[3, 1], help="epochs, fine-tune epochs of the retrained best designs")
    parser.add_argument("--final-train-subset", type=int, default=10_000, help="training images of the retrained best designs")
    parser.add_argument("--child-seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="seeds of the retrainings")
    parser.add_argument("--calibration", type=int, default=256, help="training images that calibrate the int8 activations")
    parser.add_argument("--rounds", type=int, default=5, help="alternating latency rounds")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per round")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (1 on a shared machine)")
    parser.add_argument("--out", default="bench/results/deploy.md")
    parser.add_argument("--work", default="runs/deploy", help="the searches' run folders (checkpoints to continue a killed search)")
    parser.add_argument("--report", action="store_true", help="only the table of what the results file holds; measure nothing")
    parser.add_argument(
        "--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS),
        help="measure only these searches (a slice, for parallel processes sharing the results file; a slice writes no table)",
    )
    parser.add_argument("--fixed", action=argparse.BooleanOptionalAction, default=True, help="measure the fixed 4-layer design")
    parser.add_argument("--structure", action="store_true", help="only float vs int8 size and speed by design structure (no training)")
    args = parser.parse_args()
    args.root = str(Path(args.root).resolve())  # one folder, one key in the results, from any checkout
    torch.set_num_threads(args.threads)
    if args.structure:
        structure_table(args)
        return

    slicing = ("out", "work", "report", "seeds", "child_seeds", "variants", "fixed")  # what a run measures, not how
    settings = {key: value for key, value in vars(args).items() if key not in slicing}
    settings["config"] = Path(args.config).read_text()
    results = Results(Path(args.out).with_suffix(".json"), settings)
    # The fixed design depends on none of the searches' settings: its record is kept under the few it does depend on.
    fixed_results = Results(results.path, {**{key: settings[key] for key in ("root", "calibration", "rounds", "repeats", "threads")}, "training": repr(FIXED_TRAINING)})
    work = Path(args.work) / hashlib.sha256(results.key.encode()).hexdigest()[:12]
    variants = {name: bits for key, (name, bits) in VARIANTS.items()}
    chosen = {VARIANTS[key][0] for key in args.variants}

    def measured(name: str, compute: Callable[[], dict[str, Any]], wanted: bool = True) -> dict[str, Any] | None:
        return results.get(name, compute) if wanted and not args.report else results.mine.get(name)

    # The fixed design first (it needs no search), then every search with one retraining (deployed) of its best,
    # then the further child seeds: a run stopped early has the most balanced table it can.
    wanted = args.fixed and not args.report
    fixed = fixed_results.get("fixed 4-layer design", lambda: fixed_design(args)) if wanted else fixed_results.mine.get("fixed 4-layer design")
    jobs = [(seed, name) for seed in args.seeds for name in variants]
    searches: dict[tuple[int, str], dict[str, Any] | None] = {}
    tests: dict[tuple[int, str], list[dict[str, Any]]] = {job: [] for job in jobs}
    for index, child_seed in enumerate(args.child_seeds):
        for seed, name in jobs:
            if index == 0:
                searches[seed, name] = measured(
                    f"search {seed} {name}", lambda: search_entry(args, variants[name], seed, work / f"search_{seed}_{'bits' if variants[name] else 'float'}"), name in chosen
                )
            found = searches[seed, name]
            if found is None or "best" not in found:
                continue
            deploy = index == 0
            retrained = measured(
                f"retrain {seed} {name} {child_seed}", lambda: retrain_entry(args, found["best"]["design"], child_seed, deploy), name in chosen
            )
            if retrained is not None:
                tests[seed, name].append(retrained)
    done = [entry for entry in (fixed, *searches.values(), *(t for ts in tests.values() for t in ts)) if entry is not None]
    minutes = sum(entry["seconds"] for entry in done) / 60
    loads = [entry["load"] for entry in done]

    deployed = {} if fixed is None else {f"pruning_pays 4-layer design @ 0.5 ({fixed['params']:,} params)": fixed["deploy"]}
    for (seed, name), retrainings in tests.items():
        for retrained in retrainings:
            if "deploy" in retrained:
                found = searches[seed, name]
                assert found is not None  # it was retrained
                deployed[f"best of the {name} search, seed {seed} ({found['best']['params']:,} params)"] = retrained["deploy"]
    table, target_lines = [], []
    for name, rows in deployed.items():
        lines, met = deploy_lines(name, rows)
        table += lines
        target_lines.append(f"- {name}: " + ", ".join(f"{goal} {'**met**' if ok else '**missed**'}" for goal, ok in met.items()))

    search_rows, accuracies = [], {name: [] for name in variants}
    for (seed, name), entry in searches.items():
        if entry is None:
            search_rows.append(f"| {seed} | {name} | not run yet | | | | | |")
            continue
        share = f"{entry['within']} / {entry['episodes']} ({entry['distinct']} distinct)"
        if "best" not in entry:
            search_rows.append(f"| {seed} | {name} | {share} | none | | | | |")
            continue
        best, test = entry["best"], [retrained["test"] for retrained in tests[seed, name]]
        accuracies[name] += test
        retrained_text = f"{mean_std(test)} ({', '.join(f'{100 * a:.2f}' for a in test)})" if test else "not run yet"
        search_rows.append(
            f"| {seed} | {name} | {share} | `{best['design_str'].replace(' | ', ' → ')}` | {best['size_bits']:,} | {best['params']:,} | "
            f"{100 * best['accuracy']:.2f} | {retrained_text} |"
        )
    def mean_text(name: str) -> str:
        if accuracies[name]:
            return f"{mean_std(accuracies[name])}% over {len(accuracies[name])} retrainings"
        run = [entry for (_, variant), entry in searches.items() if variant == name and entry is not None]
        return "no design in the window" if run else "not run yet"

    means = {name: mean_text(name) for name in variants}

    command = "OMP_NUM_THREADS=1 python " + shlex.join(sys.argv)
    training = yaml.safe_load(Path(args.config).read_text())["data"]["env_kwargs"]
    data = training["datamodule"]["init_args"]
    lines = [
        f"Float vs static int8 on MNIST, both run by {runtime_name()} on {args.threads} thread(s); accuracy on the 10,000 test "
        f"images; int8 calibrated on {args.calibration} training images; latency: median over {args.rounds} alternating rounds "
        f"(fresh sessions each) of the median of {args.repeats} runs. {minutes:.1f} min of compute ({len(done)} of {1 + len(jobs) * (1 + len(args.child_seeds))} parts measured) on a shared 2-core machine (1-minute load average "
        f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f} at the ends of the parts). Command: `{command}`",
        "",
        "| model | file | test accuracy (%) | file size (bytes) | latency batch 1 (ms) | latency batch 64 (ms) |",
        "|---|---|---|---|---|---|",
        *table,
        "",
        "Targets:",
        *target_lines,
        "",
        *fixed_lines(fixed),
        f"Per-layer bit-widths at equal size: `{args.config}` searched with `bits: [8, 4]` and with no bit-width decision (float "
        f"layers), both rewarded with validation accuracy within ±{args.tolerance:.0%} of {args.target:,} size_bits "
        f"(`TargetWindowReward`, mask_budget {'on' if args.mask_budget else 'off'}); {args.updates} updates × "
        f"{yaml.safe_load(Path(args.config).read_text())['data']['episodes_per_update']} episodes per search, children trained on "
        f"{data['train_subset']:,} images for {training['training']['epochs']} + {training['training']['finetune_epochs']} epochs and "
        f"scored on {data['val_subset']:,} validation images. The best design within the window (by search reward) is retrained "
        f"on {args.final_train_subset:,} images for {args.final_epochs[0]} + {args.final_epochs[1]} epochs, once per child seed "
        f"({', '.join(map(str, args.child_seeds))}), and scored on the test split.",
        "",
        "| search seed | variant | episodes in the window | best design in the window | its size_bits | its params | "
        "search validation accuracy (%) | retrained test accuracy (%), mean ± sd (each) |",
        "|---|---|---|---|---|---|---|---|",
        *search_rows,
        "",
        "Mean retrained test accuracy: " + "; ".join(f"{name}: **{text}**" for name, text in means.items()) + ".",
        "",
    ]
    if args.report or chosen == set(variants):
        publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
