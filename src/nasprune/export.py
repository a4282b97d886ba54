"""Ship a search's result: its best design trained with the final budget, saved in portable forms.

`nasprune export RUN_DIR` (and the `ExportBest` callback at the end of a run) takes the best
episode of `RUN_DIR/history.jsonl`, rebuilds the run's env from `RUN_DIR/config.yaml` (search
space, child data, child training), trains, prunes and fine-tunes the design with the training
settings overridden by `export.final_training`, and writes to `RUN_DIR/export/`:

- `design.json`   the design, as the search recorded it;
- `model.ckpt`    the pruned weights plus what rebuilds them through `nasprune.child` (`load_checkpoint`);
- `model.ts`      TorchScript: `torch.jit.load` runs it in any Python with torch, no nasprune needed;
- `model.onnx`    ONNX, when the `onnx` package is installed (`pip install nasprune[onnx]`);
- `metrics.json`  test and validation accuracy, params, FLOPs and CPU latency of the exported net.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from nasprune.child import ChildNet, ChildTraining, Design, build_model, count_flops, count_params, evaluate_design
from nasprune.child.metrics import measure_latency
from nasprune.config import ConfigError
from nasprune.records import Record, best_of, is_evaluated, read_history

log = logging.getLogger(__name__)

NASPRUNE_ENV_ID = "nasprune/NasPrune-v0"


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
    return Design(tuple(layers))


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


def save_onnx(net: nn.Module, path: Path, input_shape: tuple[int, ...]) -> None:
    """ONNX with a dynamic batch axis, checked by `onnx.checker`.

    The TorchScript-based exporter (`dynamo=False`) is used: the dynamo one needs `onnxscript`,
    a further dependency, for no gain on a plain CNN.
    """
    import onnx

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            net.eval(),
            (torch.zeros(1, *input_shape),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)))


@torch.inference_mode()
def held_out_accuracy(net: nn.Module, datamodule: Any, num_classes: int) -> float:
    """Accuracy in [0, 1] on the data module's held-out test split (never seen by the search)."""
    datamodule.setup("test")
    accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
    net.eval()
    for x, y in datamodule.test_dataloader():
        accuracy.update(net(x), y)
    return float(accuracy.compute())


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


def export_design(
    record: Mapping[str, Any], env: Any, training: ChildTraining, out_dir: Path, seed: int = 0
) -> dict[str, Any]:
    """Train, prune and fine-tune `record`'s design in `env`'s setting; write the files; return the metrics."""
    design = Design.from_dict(record["design"])
    datamodule, stem_width = env.datamodule, env.space.stem_width
    shape, classes = tuple(datamodule.input_shape), datamodule.num_classes
    result = evaluate_design(design, datamodule, training, stem_width, seed)
    assert result.model is not None  # evaluate_design keeps the trained model
    net = result.model.cpu().eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "design.json").write_text(json.dumps(design.to_dict(), indent=2) + "\n", encoding="utf-8")
    save_checkpoint(net, out_dir / "model.ckpt", shape, classes, stem_width)
    save_torchscript(net, out_dir / "model.ts", shape)
    files = ["design.json", "model.ckpt", "model.ts"]
    if onnx_available():
        save_onnx(net, out_dir / "model.onnx", shape)
        files.append("model.onnx")
    metrics = {
        "design_str": str(design),
        "architecture": str(pruned_architecture(net)),
        "episode": record.get("episode"),
        "search_reward": record.get("reward"),
        "test_accuracy": held_out_accuracy(net, datamodule, classes),
        "val_accuracy": result.accuracy,
        "val_accuracy_unpruned": result.accuracy_unpruned,
        "params": count_params(net),
        "flops": count_flops(net, shape),
        "latency_ms": measure_latency(net, shape, batch_size=1, warmup=5, repeats=50),
        "latency_device": "cpu, batch 1, median of 50",
        "input_shape": list(shape),
        "final_training": dataclasses.asdict(training),
        "seed": seed,
        "files": files,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def export_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> Path:
    """Export the best design of a finished (or interrupted) NasPrune run; returns the export folder.

    `overrides` and `seed` default to the run's `export.final_training` and `export.seed`.
    """
    from nasprune.envs.nasprune_env import NasPruneEnv

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    data = config.get("data") or {}
    if data.get("env_id") != NASPRUNE_ENV_ID:
        raise ConfigError("data.env_id", f"export builds child networks; it needs a {NASPRUNE_ENV_ID} run, this one used {data.get('env_id')!r}")
    history = run_dir / "history.jsonl"
    if not history.is_file():
        raise ConfigError("RUN_DIR", f"{run_dir} has no history.jsonl (no episode finished)")
    export_config = config.get("export") or {}
    try:
        env = NasPruneEnv(**(data.get("env_kwargs") or {}))
    except ConfigError as err:
        raise err.under("data.env_kwargs") from None
    training = final_training(env.training, overrides if overrides is not None else export_config.get("final_training"))
    seed = seed if seed is not None else int(export_config.get("seed", 0))
    target = Path(out_dir) if out_dir is not None else run_dir / export_config.get("directory", "export")
    export_design(best_record(read_history(history)), env, training, target, seed)
    return target
