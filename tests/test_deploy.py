"""The deployed model: static int8 of the whole network, measured in ONNX Runtime, runs without nasprune."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from nasprune.child import ChildTraining, Design, DigitsDataModule, LayerDesign, evaluate_design
from nasprune.cli import main
from nasprune.config import ConfigError
from nasprune.envs.nasprune_env import NasPruneEnv
from nasprune.export import DeploySettings, export_design, load_checkpoint

# A fresh interpreter that refuses nasprune and torch: ONNX Runtime and numpy must be enough.
FRESH_PROCESS = textwrap.dedent(
    """
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("nasprune", "torch"):
                raise ImportError(name + " must not be imported here")
            return None

    sys.meta_path.insert(0, Refuse())
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": np.load(sys.argv[2])})
    np.save(sys.argv[3], logits.argmax(axis=1))
    """
)

SKIP_DESIGN = [
    {"op": "conv3x3", "width": 16},
    {"op": "maxpool3x3"},
    {"op": "conv3x3", "width": 16, "skip": 1},
    {"op": "sepconv3x3", "width": 16, "skip": 0, "skip_mode": "concat"},
]


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pruned design with an added and a concatenated skip, exported with its int8 model. Trained to
    about 93% test accuracy, as a shipped model would be: a barely trained one (78% after 3 + 1 epochs)
    has so many near-ties between classes that agreement measures the ties more than the quantizer."""
    env = NasPruneEnv(search_space={"architecture": SKIP_DESIGN, "stem_width": 8}, training={"epochs": 8, "finetune_epochs": 2})
    design = env.space.design_from_actions([2, 1, 1])  # prune ratios 0.5, 0.25, 0.25
    record = {"design": design.to_dict(), "episode": 0, "reward": 0.0}
    out = tmp_path_factory.mktemp("int8_export")
    export_design(record, env, env.training, out, seed=0, deploy=DeploySettings(int8=True, calibration_images=200, latency_batch_size=32))
    return out


@pytest.mark.slow
def test_int8_export_writes_both_files_measured_in_their_runtime(int8_export: Path) -> None:
    metrics = json.loads((int8_export / "metrics.json").read_text())
    assert {"model.onnx", "model.int8.onnx"} <= set(metrics["files"])
    deploy = metrics["deploy"]
    import onnxruntime

    for kind, name in (("float", "model.onnx"), ("int8", "model.int8.onnx")):
        report = deploy[kind]
        assert report["file"] == name and report["size_bytes"] == (int8_export / name).stat().st_size
        assert report["runtime"] == f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"
        assert set(report["latency_ms"]) == {"batch_1", "batch_32"} and min(report["latency_ms"].values()) > 0
    assert deploy["float"]["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)  # same net, other runtime
    assert abs(deploy["int8"]["test_accuracy"] - deploy["float"]["test_accuracy"]) <= 0.03
    assert deploy["calibration_images"] == 200


@pytest.mark.slow
def test_every_convolution_is_quantized(int8_export: Path) -> None:
    model = onnx.load(str(int8_export / "model.int8.onnx"))
    float_convs = [n for n in onnx.load(str(int8_export / "model.onnx")).graph.node if n.op_type in ("Conv", "Gemm")]
    assert len(float_convs) >= 7  # stem, 3 layer convs + depthwise, the projection, the classifier
    assert not [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    int8_convs = [n for n in model.graph.node if n.op_type in ("QLinearConv", "QGemm")]
    assert len(int8_convs) == len(float_convs)
    weights = {init.name: init for init in model.graph.initializer}
    int8_weights = [weights[n.input[3]] for n in int8_convs]  # (x, x scale, x zero point, w, …)
    assert all(w.data_type == onnx.TensorProto.INT8 for w in int8_weights)
    # one byte a weight (a net this small still gains no file size: its quantization parameters outweigh the weights)
    float_weights = {init.name: init for init in onnx.load(str(int8_export / "model.onnx")).graph.initializer}
    float_bytes = sum(len(float_weights[node.input[1]].raw_data) for node in float_convs)
    assert sum(len(w.raw_data) for w in int8_weights) * 4 == float_bytes


@pytest.mark.slow
def test_int8_model_runs_without_nasprune_and_agrees_with_the_float_model(int8_export: Path, tmp_path: Path) -> None:
    datamodule = DigitsDataModule()
    datamodule.setup("test")
    x, _ = next(iter(datamodule.test_dataloader()))  # the 359 held-out images
    np.save(tmp_path / "x.npy", x.numpy())
    subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(int8_export / "model.int8.onnx"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        cwd=tmp_path,
    )
    with torch.no_grad():
        expected = load_checkpoint(int8_export / "model.ckpt")(x).argmax(dim=1).numpy()
    agreement = float((np.load(tmp_path / "y.npy") == expected).mean())
    assert len(expected) == 359 and agreement >= 0.97


@pytest.mark.slow
def test_int8_scoring_mode_rewards_the_deployed_model() -> None:
    design = Design((LayerDesign("conv3x3", 16, 0.5), LayerDesign("conv3x3", 16, skip=0)))
    training = ChildTraining(epochs=2, finetune_epochs=1, quantize="int8", calibration_images=128, latency_batch_size=16, latency_repeats=5)
    result = evaluate_design(design, DigitsDataModule(), training, stem_width=8, seed=0)
    float_result = evaluate_design(design, DigitsDataModule(), ChildTraining(epochs=2, finetune_epochs=1), stem_width=8, seed=0)
    assert result.accuracy_float == float_result.accuracy  # the same child, scored in float before
    assert result.accuracy != result.accuracy_float or result.latency_ms != result.latency_ms_float
    assert abs(result.accuracy - result.accuracy_float) <= 0.03
    assert result.latency_ms > 0 and result.latency_ms_float > 0
    assert 0 < result.size_bytes_int8 < result.size_bytes
    assert {"accuracy_float", "latency_ms_float", "size_bytes_int8", "seconds/int8"} <= set(result.metrics())


@pytest.fixture
def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError


@pytest.mark.usefixtures("without_onnxruntime")
def test_missing_runtime_fails_in_one_line_before_any_search(tiny_env_kwargs: dict, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError) as error:
        NasPruneEnv(**{**tiny_env_kwargs, "training": {"quantize": "int8"}})
    assert str(error.value) == "training.quantize: int8 needs onnxruntime, not installed: pip install 'nasprune[deploy]'"
    with pytest.raises(ConfigError, match=r"^export\.int8: int8 needs onnxruntime, not installed: pip install 'nasprune\[deploy\]'$"):
        DeploySettings(int8=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", "configs/digits.yaml", "--export.int8=true", "--trainer.max_steps=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "nasprune: error: export.int8: int8 needs onnxruntime, not installed: pip install 'nasprune[deploy]'\n"


@pytest.mark.slow
def test_export_command_writes_the_int8_model_on_request(tiny_search_run: Path, tmp_path: Path) -> None:
    main(["export", str(tiny_search_run), "--int8", "--epochs", "1", "--finetune-epochs", "0", "--out", str(tmp_path / "out")])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (tmp_path / "out" / "model.int8.onnx").is_file() and "model.int8.onnx" in metrics["files"]
    assert set(metrics["deploy"]) == {"float", "int8", "calibration_images"}
    assert set(metrics["deploy"]["int8"]["latency_ms"]) == {"batch_1", "batch_64"}  # the run's export defaults


@pytest.mark.slow
def test_int8_scoring_latency_reference_is_a_deployed_latency() -> None:
    env = NasPruneEnv(
        search_space={"num_layers": 1, "ops": ["conv3x3"], "widths": [8], "prune_ratios": [0.0], "stem_width": 4},
        training={"epochs": 1, "finetune_epochs": 0, "quantize": "int8", "latency_batch_size": 8, "latency_repeats": 3, "calibration_images": 64},
        reward={"class_path": "nasprune.child.LinearReward", "init_args": {"cost": "latency_ms"}},
    )
    env.reset(seed=0)
    for action in (0, 0, 0):
        _, _, done, _, info = env.step(action)
    assert done and "error" not in info
    assert info["reward/cost_term"] == pytest.approx(0.5 * info["latency_ms"] / env.reward_fn.cost_ref)
    # the same (unpruned) architecture: the int8 reference is of the order of the child's int8 latency, not torch's float one
    assert 0.2 < info["latency_ms"] / env.reward_fn.cost_ref < 5
