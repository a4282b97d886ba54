"""Ship a search's result: its best design trained with the final budget, saved in portable forms.

`nasprune export RUN_DIR` (and the `ExportBest` callback at the end of a run) takes the best
episode of `RUN_DIR/history.jsonl`, rebuilds the run's env from `RUN_DIR/config.yaml` (search
space, child data, child training), trains, prunes and fine-tunes the design with the training
settings overridden by `export.final_training`, and writes to `RUN_DIR/export/` (a PruneModel
run: its best ratios applied to the trained network and fine-tuned; `ratios.json` instead of
`design.json` and no `model.ckpt`, the network being the user's own):

- `design.json`   the design, as the search recorded it;
- `model.ckpt`    the pruned weights plus what rebuilds them through `nasprune.child` (`load_checkpoint`);
- `model.ts`      TorchScript: `torch.jit.load` runs it in any Python with torch, no nasprune needed;
- `model.onnx`    ONNX, when the `onnx` package is installed (`pip install nasprune[onnx]`);
- `model.int8.onnx` with `export.int8` (`pip install nasprune[deploy]`): the whole network statically
                  quantized to int8 by ONNX Runtime, calibrated on training images (`nasprune.child.deploy`);
- `metrics.json`  test and validation accuracy, params, FLOPs and CPU latency of the exported net; with
                  int8, under `deploy`, float and int8 ONNX files alike measured in ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import nn

from nasprune.child import ChildNet, ChildTraining, Design, build_model, count_flops, count_params, evaluate_design
from nasprune.child.deploy import calibration_images, require_deploy, runtime_report, save_onnx, write_float_and_int8
from nasprune.child.metrics import accuracy, measure_latency
from nasprune.config import ConfigError, PositiveInt
from nasprune.files import atomic_directory
from nasprune.records import Record, best_of, is_evaluated, read_history

log = logging.getLogger(__name__)

NASPRUNE_ENV_ID = "nasprune/NasPrune-v0"
PRUNE_MODEL_ENV_ID = "nasprune/PruneModel-v0"


def best_record(records: list[Record]) -> Record:
    """The highest-reward episode that evaluated a design (failed children are never exported)."""
    best = best_of([r for r in records if is_evaluated(r)])
    if best is None:
        raise ConfigError("RUN_DIR", "the run's history has no successfully evaluated design to export")
    return best


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The config LightningCLI saved next to the run's history."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError("RUN_DIR", f"{run_dir} has no config.yaml; give a run directory such as runs/digits/lightning_logs/version_0")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def pruned_architecture(net: ChildNet) -> Design:
    """The design whose unpruned network has the pruned net's shapes: widths read off its layers."""
    layers = [
        dataclasses.replace(layer, width=conv.out_channels, prune_ratio=0.0) if conv is not None else layer
        for layer, conv in zip(net.design.layers, net.output_convs())
    ]
    return dataclasses.replace(net.design, layers=tuple(layers))


def save_checkpoint(net: ChildNet, path: Path, input_shape: tuple[int, ...], num_classes: int, stem_width: int) -> None:
    torch.save(
        {
            "design": net.design.to_dict(),
            "architecture": pruned_architecture(net).to_dict(),
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "stem_width": stem_width,
            "state_dict": net.state_dict(),
        },
        path,
    )


def load_checkpoint(path: str | Path) -> ChildNet:
    """Rebuild an exported net with `nasprune.child.build_model` and load its pruned weights."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    architecture = Design.from_dict(checkpoint["architecture"])
    net = build_model(architecture, checkpoint["input_shape"][0], checkpoint["num_classes"], checkpoint["stem_width"])
    net.load_state_dict(checkpoint["state_dict"])
    net.design = Design.from_dict(checkpoint["design"])
    return net.eval()


def save_torchscript(net: nn.Module, path: Path, input_shape: tuple[int, ...]) -> None:
    """Traced TorchScript: a plain CNN has no data-dependent control flow, so tracing is exact."""
    with warnings.catch_warnings():
        # torch 2.9+ calls TorchScript deprecated; it is still the format that loads without our code
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*deprecated.*")
        torch.jit.trace(net.eval(), torch.zeros(1, *input_shape)).save(str(path))


def onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


def held_out_accuracy(net: nn.Module, datamodule: Any, num_classes: int) -> float:
    """Accuracy in [0, 1] on the data module's held-out test split (never seen by the search)."""
    datamodule.setup("test")
    return accuracy(net, datamodule.test_dataloader(), num_classes)


def final_training(base: ChildTraining, overrides: Mapping[str, Any] | None) -> ChildTraining:
    """The search's child training with `overrides` (e.g. more epochs) applied.

    `export.final_training` is a free mapping (not typed by the CLI), so its keys and epoch counts
    are checked here."""
    allowed = {f.name for f in dataclasses.fields(ChildTraining)}
    for key, value in (overrides or {}).items():
        if key not in allowed:
            raise ConfigError(f"export.final_training.{key}", f"unknown training key; allowed: {', '.join(sorted(allowed))}")
        if key in ("epochs", "finetune_epochs") and (not isinstance(value, int) or value < 0):
            raise ConfigError(f"export.final_training.{key}", f"must be a non-negative integer, got {value!r}")
    try:
        return ChildTraining.from_config({**dataclasses.asdict(base), **dict(overrides or {})})
    except ConfigError as err:
        raise err.under("export.final_training") from None


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    """Whether and how the export also writes and measures the static int8 model (keys of `export`).

    `calibration_images` training images calibrate the activation ranges; both ONNX files are
    timed in ONNX Runtime at batch 1 and `latency_batch_size` on `latency_threads` intra-op threads.
    """

    int8: bool = False
    calibration_images: PositiveInt = 256
    latency_batch_size: PositiveInt = 64
    latency_threads: PositiveInt = 1

    def __post_init__(self) -> None:
        if self.int8:
            require_deploy("export.int8")


def deploy_metrics(net: nn.Module, datamodule: Any, out_dir: Path, settings: DeploySettings) -> dict[str, Any]:
    """Write `model.onnx` and `model.int8.onnx`; each file's test accuracy, size and latency in its runtime."""
    datamodule.setup("fit")
    shape = tuple(datamodule.input_shape)
    paths = write_float_and_int8(net, out_dir, shape, calibration_images(datamodule.train_dataloader(), settings.calibration_images))
    datamodule.setup("test")
    batch_sizes = tuple(dict.fromkeys((1, settings.latency_batch_size)))
    reports = {
        kind: runtime_report(path, datamodule.test_dataloader(), shape, batch_sizes, threads=settings.latency_threads)
        for kind, path in paths.items()
    }
    return {**reports, "calibration_images": settings.calibration_images}


def export_design(
    record: Mapping[str, Any], env: Any, training: ChildTraining, out_dir: Path, seed: int = 0, deploy: DeploySettings | None = None
) -> dict[str, Any]:
    """Train, prune and fine-tune `record`'s design in `env`'s setting; write the files; return the metrics."""
    if "ratios" in record:
        return export_ratios(record, env, training, out_dir, seed, deploy)
    design = Design.from_dict(record["design"])
    datamodule, stem_width = env.datamodule, env.space.stem_width
    shape, classes = tuple(datamodule.input_shape), datamodule.num_classes
    result = evaluate_design(design, datamodule, training, stem_width, seed)
    net = cast(ChildNet, result.model).cpu().eval()  # evaluate_design keeps the child it built

    # the folder appears complete or not at all: a kill during the export leaves no partial export
    with atomic_directory(out_dir) as staging:
        (staging / "design.json").write_text(json.dumps(design.to_dict(), indent=2) + "\n", encoding="utf-8")
        save_checkpoint(net, staging / "model.ckpt", shape, classes, stem_width)
        metrics = {"design_str": str(design), "architecture": str(pruned_architecture(net))}
        return _ship(net, result.accuracy, result.accuracy_unpruned, ["design.json", "model.ckpt"], metrics, record, env, training, staging, seed, deploy)


def export_ratios(
    record: Mapping[str, Any], env: Any, training: ChildTraining, out_dir: Path, seed: int = 0, deploy: DeploySettings | None = None
) -> dict[str, Any]:
    """A PruneModel run's `record`: its ratios applied to the env's trained network, fine-tuned by
    `training`; write the files; return the metrics."""
    names = [g.name for g in env.groups.groups]
    missing = sorted(set(names) - set(record["ratios"]))
    if missing:
        raise ConfigError("RUN_DIR", f"the best episode has no ratio for group {missing[0]!r}: the run's model is not this config's")
    ratios = [float(record["ratios"][name]) for name in names]
    result = env.evaluate(ratios, training, seed)
    net = result.model.cpu().eval()
    with atomic_directory(out_dir) as staging:  # complete or absent, as for a design
        (staging / "ratios.json").write_text(json.dumps(env.ratio_map(ratios), indent=2) + "\n", encoding="utf-8")
        metrics = {"design_str": record.get("design_str"), "pretrained_weights": env.pretrained_from}
        return _ship(net, result.accuracy, result.accuracy_unpruned, ["ratios.json"], metrics, record, env, training, staging, seed, deploy)


def _ship(
    net: nn.Module,
    val_accuracy: float,
    val_accuracy_unpruned: float,
    files: list[str],
    metrics: dict[str, Any],
    record: Mapping[str, Any],
    env: Any,
    training: ChildTraining,
    out_dir: Path,
    seed: int,
    deploy: DeploySettings | None,
) -> dict[str, Any]:
    """Write TorchScript (and ONNX) of `net` and `metrics.json`: test accuracy, params, FLOPs, latency."""
    datamodule = env.datamodule
    shape, classes = tuple(datamodule.input_shape), datamodule.num_classes
    save_torchscript(net, out_dir / "model.ts", shape)
    files = [*files, "model.ts"]
    deployed = None
    if deploy is not None and deploy.int8:
        deployed = deploy_metrics(net, datamodule, out_dir, deploy)
        files += ["model.onnx", "model.int8.onnx"]
    elif onnx_available():
        save_onnx(net, out_dir / "model.onnx", shape)
        files.append("model.onnx")
    metrics = {
        **metrics,
        "episode": record.get("episode"),
        "search_reward": record.get("reward"),
        "test_accuracy": held_out_accuracy(net, datamodule, classes),
        "val_accuracy": val_accuracy,
        "val_accuracy_unpruned": val_accuracy_unpruned,
        "params": count_params(net),
        "flops": count_flops(net, shape),
        "latency_ms": measure_latency(net, shape, batch_size=1, warmup=5, repeats=50),
        "latency_device": "cpu, batch 1, median of 50",
        "input_shape": list(shape),
        "final_training": dataclasses.asdict(training),
        "seed": seed,
        "files": files,
    }
    if deployed is not None:
        metrics["deploy"] = deployed
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    int8: bool | None = None,
) -> Path:
    """Export the best design of a finished (or interrupted) NasPrune or PruneModel run; returns the
    export folder.

    `overrides`, `seed` and `int8` default to the run's `export.final_training`, `export.seed` and
    `export.int8` (the int8 model's other settings are always the run's).
    """
    from nasprune.envs.nasprune_env import NasPruneEnv
    from nasprune.envs.prune_model_env import PruneModelEnv

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    data = config.get("data") or {}
    envs = {NASPRUNE_ENV_ID: NasPruneEnv, PRUNE_MODEL_ENV_ID: PruneModelEnv}
    if data.get("env_id") not in envs:
        raise ConfigError("data.env_id", f"export builds child networks; it needs a {' or '.join(envs)} run, this one used {data.get('env_id')!r}")
    history = run_dir / "history.jsonl"
    if not history.is_file():
        raise ConfigError("RUN_DIR", f"{run_dir} has no history.jsonl (no episode finished)")
    export_config = config.get("export") or {}
    deploy_keys = {f.name for f in dataclasses.fields(DeploySettings)}
    deploy = DeploySettings(**{**{k: v for k, v in export_config.items() if k in deploy_keys}, **({} if int8 is None else {"int8": int8})})
    try:
        env = envs[data["env_id"]](**(data.get("env_kwargs") or {}))
    except ConfigError as err:
        raise err.under("data.env_kwargs") from None
    training = final_training(env.training, overrides if overrides is not None else export_config.get("final_training"))
    seed = seed if seed is not None else int(export_config.get("seed", 0))
    target = Path(out_dir) if out_dir is not None else run_dir / export_config.get("directory", "export")
    export_design(best_record(read_history(history)), env, training, target, seed, deploy)
    return target
