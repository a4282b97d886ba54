"""The deployed model: ONNX export, static int8 quantization of the whole network, runtime measurements.

Toolchain: ONNX Runtime. `quantize_static` turns the exported float ONNX graph into an int8 graph —
every convolution and the classifier, weights int8 per output channel (symmetric, on a 7-bit range:
see `quantize_int8`), activations uint8 calibrated on a few hundred training images (min/max) — that
ONNX Runtime's CPU provider runs with integer kernels. The graph is written in ONNX Runtime's
operator form (`QLinearConv`, a standard ONNX op, and `QGemm`, an ONNX Runtime op): the kernels the
CPU provider would fuse a QDQ graph into anyway, in a file about 8% smaller than the QDQ form for a
60k-parameter net, where the QDQ nodes' metadata counts. (QDQ is the form to choose for other
execution providers such as TensorRT.) Both files are measured where they run, so float and int8 are
timed by the same runtime.

Why not PyTorch's own int8: torch 2.14 has no PT2 export quantization in `torch.ao` any more
(`quantize_pt2e` lives in torchao, a further dependency), and eager/FX static quantization is
deprecated there. An ONNX file is also what runs without Python on an edge device.
"""

from __future__ import annotations

import copy
import importlib
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasprune.config import ConfigError

log = logging.getLogger(__name__)

# What the int8 path imports (`pip install 'nasprune[deploy]'`); ONNX Runtime's pre-processing needs sympy.
DEPLOY_MODULES = ("onnx", "onnxruntime", "sympy")
INSTALL_HINT = "pip install 'nasprune[deploy]'"
INPUT_NAME = "input"


def missing_deploy_modules() -> list[str]:
    """The modules of `DEPLOY_MODULES` that cannot be imported here."""
    missing = []
    for name in DEPLOY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def require_deploy(key: str) -> None:
    """Fail fast, naming the config `key` that asked for int8, when the toolchain is not installed."""
    missing = missing_deploy_modules()
    if missing:
        raise ConfigError(key, f"int8 needs {', '.join(missing)}, not installed: {INSTALL_HINT}")


def save_onnx(net: nn.Module, path: Path, input_shape: tuple[int, ...]) -> None:
    """ONNX with a dynamic batch axis, checked by `onnx.checker`.

    The TorchScript-based exporter (`dynamo=False`) is used: the dynamo one needs `onnxscript`,
    a further dependency, for no gain on a plain CNN. In eval mode it folds BatchNorm into the convs.
    """
    import onnx

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            net.eval(),
            (torch.zeros(1, *input_shape),),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=["logits"],
            dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)))


def calibration_images(batches: Iterable[tuple[torch.Tensor, Any]], images: int, batch_size: int = 32) -> list[np.ndarray]:
    """The first `images` inputs of `batches` (training data), re-batched for the calibration reader."""
    if images < 1:
        raise ValueError(f"need at least one calibration image, got {images}")
    taken: list[torch.Tensor] = []
    count = 0
    for x, _ in batches:
        taken.append(x[: images - count])
        count += len(taken[-1])
        if count >= images:
            break
    stacked = torch.cat(taken).cpu().numpy().astype(np.float32)
    return [stacked[i : i + batch_size] for i in range(0, len(stacked), batch_size)]


def quantize_int8(float_path: Path, int8_path: Path, calibration: list[np.ndarray]) -> None:
    """Static int8 quantization of a float ONNX file (int8 per-channel weights on a 7-bit range,
    uint8 activations).

    `quant_pre_process` (shape inference + graph optimisation) first, as ONNX Runtime advises;
    the shape annotations it adds are dropped from the result: the runtime re-infers them, and the
    file stays the size of its weights.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights (stored as int8): x86 CPUs without VNNI run uint8 × int8 with VPMADDUBSW,
            # whose int16 pair sums saturate; ONNX Runtime's documented remedy. Without it a 16-channel
            # child on an AVX2 machine agreed with its float model on 93–96% of the digits test images.
            reduce_range=True,
        )
    model = onnx.load(str(int8_path))
    model.graph.ClearField("value_info")
    onnx.save(model, str(int8_path))


def session(path: Path, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session on `threads` intra-op threads (1: steady timings on a shared machine)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runtime_name() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} (CPUExecutionProvider)"


def predict(runner: Any, x: np.ndarray) -> np.ndarray:
    """Class predictions of an ONNX Runtime session on a float32 batch."""
    (logits,) = runner.run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    return logits.argmax(axis=1)


def runtime_accuracy(runner: Any, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy in [0, 1] of a session over (x, y) torch batches."""
    correct = total = 0
    for x, y in batches:
        correct += int((predict(runner, x.numpy()) == y.numpy()).sum())
        total += len(y)
    return correct / total


def runtime_latency_ms(runner: Any, input_shape: tuple[int, ...], batch_size: int, warmup: int = 5, repeats: int = 30) -> float:
    """Median wall time in milliseconds of one session run on a `batch_size` batch, after `warmup` runs."""
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"need repeats ≥ 1, warmup ≥ 0, batch_size ≥ 1; got {repeats}, {warmup}, {batch_size}")
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)
    feed = {INPUT_NAME: x}
    for _ in range(warmup):
        runner.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(None, feed)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def write_float_and_int8(net: nn.Module, out_dir: Path, input_shape: tuple[int, ...], calibration: list[np.ndarray]) -> dict[str, Path]:
    """`model.onnx` (float) and `model.int8.onnx` (static int8) of `net` in `out_dir`."""
    paths = {"float": out_dir / "model.onnx", "int8": out_dir / "model.int8.onnx"}
    save_onnx(net, paths["float"], input_shape)
    quantize_int8(paths["float"], paths["int8"], calibration)
    return paths


def runtime_report(
    path: Path,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    input_shape: tuple[int, ...],
    batch_sizes: tuple[int, ...] = (1, 64),
    warmup: int = 5,
    repeats: int = 30,
    threads: int = 1,
) -> dict[str, Any]:
    """One ONNX file measured in the runtime that runs it: accuracy on `batches` (the held-out test
    split), file size, latency per batch size, and the runtime's name and version."""
    runner = session(path, threads)
    return {
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "test_accuracy": runtime_accuracy(runner, batches),
        "latency_ms": {f"batch_{b}": runtime_latency_ms(runner, input_shape, b, warmup, repeats) for b in batch_sizes},
        "runtime": runtime_name(),
        "threads": threads,
        "latency_method": f"median of {repeats} runs after {warmup} warm-up runs",
    }


def score_int8(
    net: nn.Module,
    datamodule: Any,
    calibration: int,
    latency_batch_size: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, float]:
    """What ships of a scored child: its static int8 model's validation accuracy, file size and latency.

    The child (a plain network: `evaluate_design` has baked its fake quantizers in) is exported and quantized in a temporary folder,
    calibrated on `calibration` training images; the latency (of a `latency_batch_size` batch, when
    set) is measured in ONNX Runtime on as many threads as torch uses.
    """
    plain = copy.deepcopy(net).cpu().eval()
    shape = tuple(datamodule.input_shape)
    images = calibration_images(datamodule.train_dataloader(), calibration)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_float_and_int8(plain, Path(tmp), shape, images)
        runner = session(paths["int8"], torch.get_num_threads())
        scored = {"accuracy": runtime_accuracy(runner, datamodule.val_dataloader()), "size_bytes": paths["int8"].stat().st_size}
        if latency_batch_size is not None:
            scored["latency_ms"] = runtime_latency_ms(runner, shape, latency_batch_size, warmup, repeats)
    return scored
