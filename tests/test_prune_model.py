"""PruneModel: any network's prunable groups, its FLOPs model, the AMC observation, the hard budget,
bad input before any search, failures as penalties, and the export of such a run."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from gymnasium.utils.env_checker import check_env
from torch import nn

from conftest import WITHOUT_NASPRUNE
from nasprune.child.metrics import count_flops, count_params
from nasprune.child.prune_model import PrunableGroups, build_network, load_weights, prune_network
from nasprune.cli import main
from nasprune.config import ConfigError
from nasprune.envs.prune_model_env import PruneModelEnv
from toy_models import TinyResNet

TINY = {"class_path": "toy_models.TinyResNet"}
# 8×8 digits through TinyResNet (width 8), by hand: 2 · positions · in · out · k²
STEM, B1_CONV, B2_CONV1, B2_CONV2, B2_PROJ, FC = 9216, 73728, 36864, 73728, 4096, 320
TOTAL = STEM + 2 * B1_CONV + B2_CONV1 + B2_CONV2 + B2_PROJ + FC  # 271,680


def shapes_flops_and_params(net: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """FLOPs and params implied by the layers' shapes alone (conv: 2·H·W·out·in/groups·k², linear: 2·in·out)."""
    flops = 0

    def hook(module: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal flops
        if isinstance(module, nn.Conv2d):
            h, w = out.shape[-2:]
            flops += 2 * h * w * module.out_channels * module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            flops += 2 * module.in_features * module.out_features

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    params = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            params += m.out_channels * m.in_channels // m.groups * math.prod(m.kernel_size) + (m.out_channels if m.bias is not None else 0)
        elif isinstance(m, nn.BatchNorm2d):
            params += 2 * m.num_features
        elif isinstance(m, nn.Linear):
            params += m.in_features * m.out_features + m.out_features
    return flops, params


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(TinyResNet().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_env(tiny_checkpoint: Path) -> PruneModelEnv:
    return PruneModelEnv(model=TINY, checkpoint=str(tiny_checkpoint), flops_target=0.3, training={"finetune_epochs": 0})


def test_every_group_of_a_torchvision_resnet_pruned_has_the_flops_and_params_its_shapes_imply() -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    shape = (3, 32, 32)
    groups = PrunableGroups(net, shape, 10)
    names = [g.name for g in groups.groups]
    # 4 residual streams (one decision each, both sides of every add) + the first conv of the 8 blocks
    assert len(groups) == 12 and names[:3] == ["conv1", "layer1.0.conv1", "layer1.1.conv1"]
    stream = groups.groups[0]
    assert stream.members == ("conv1", "layer1.0.conv2", "layer1.1.conv2") and stream.channels == 64
    ratios = [0.125 * (i % 6) for i in range(len(groups))]
    pruned = prune_network(copy.deepcopy(net), shape, 10, {g.name: r for g, r in zip(groups.groups, ratios)})
    modules = dict(pruned.named_modules())
    for group, ratio in zip(groups.groups, ratios):
        assert {modules[m].out_channels for m in group.members} == {int(group.channels * (1 - ratio))}
    assert pruned.fc.out_features == 10
    assert pruned(torch.randn(2, *shape)).shape == (2, 10)
    flops, params = shapes_flops_and_params(pruned, shape)
    assert count_flops(pruned, shape) == flops == groups.flops(ratios)
    assert count_params(pruned) == params
    assert flops < count_flops(net, shape)


def test_the_flops_model_of_a_small_residual_net_by_hand() -> None:
    groups = PrunableGroups(TinyResNet(), (1, 8, 8), 10)
    assert [g.members for g in groups.groups] == [("stem", "b1_conv2"), ("b1_conv1",), ("b2_conv1",), ("b2_conv2", "b2_proj")]
    assert groups.flops([None] * 4) == TOTAL
    assert [groups.owned(g) for g in range(4)] == [STEM + B1_CONV, B1_CONV, B2_CONV1, B2_CONV2 + B2_PROJ]
    # halving the stem's stream halves the stem, b1_conv2's outputs and the inputs of b1_conv1, b2_conv1, b2_proj
    removed = STEM / 2 + 2 * B1_CONV / 2 + B2_CONV1 / 2 + B2_PROJ / 2
    assert groups.flops([0.5, None, None, None]) == TOTAL - removed


def test_the_observation_is_amc_s_embedding_of_the_layer_it_describes(tiny_env: PruneModelEnv) -> None:
    obs, _ = tiny_env.reset(seed=0)
    # stem: index 0, 8 of 16 channels, 1 of 16 inputs, kernel 3 of 3, stride 1 of 2, its share, none removed, the rest
    expected = [0, 8 / 16, 1 / 16, 1, 1 / 2, (STEM + B1_CONV) / TOTAL, 0, (B1_CONV + B2_CONV1 + B2_CONV2 + B2_PROJ) / TOTAL, 0]
    np.testing.assert_allclose(obs["layer"], expected, rtol=1e-6)
    obs, *_ = tiny_env.step(tiny_env.ratios.index(0.5))
    removed = (STEM / 2 + 2 * B1_CONV / 2 + B2_CONV1 / 2 + B2_PROJ / 2) / TOTAL
    expected = [1 / 3, 8 / 16, 8 / 16, 1, 1 / 2, B1_CONV / TOTAL, removed, (B2_CONV1 + B2_CONV2 + B2_PROJ) / TOTAL, 0.5]
    np.testing.assert_allclose(obs["layer"], expected, rtol=1e-6)
    assert tiny_env.observation_space.contains(obs)


def test_the_env_passes_gymnasium_s_checker(tiny_env: PruneModelEnv) -> None:
    check_env(tiny_env, skip_render_check=True)


def test_the_hard_budget_mask_never_lets_an_episode_end_over_it(tiny_env: PruneModelEnv) -> None:
    rng = np.random.default_rng(0)
    high = 0.3 * 1.03 * TOTAL
    for episode in range(25):
        obs, _ = tiny_env.reset(seed=episode)
        done = False
        while not done:
            obs, reward, done, _, info = tiny_env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        assert "error" not in info and info["flops"] <= high
        chosen = [info["ratios"][g.name] for g in tiny_env.groups.groups]
        assert info["flops"] == tiny_env.groups.flops(chosen)
        assert info["reward"] == reward


def test_a_decision_copy_tells_the_queue_the_child_s_flops_as_its_cost(tiny_env: PruneModelEnv) -> None:
    """The estimate a work queue orders evaluations by is the pruned child's FLOPs, as its evaluation then counts them."""
    from nasprune.controller.queue import evaluate
    from nasprune.decisions import EVALUATION_COST

    decisions = tiny_env.decision_env()
    rng = np.random.default_rng(1)
    obs, _ = tiny_env.reset(seed=4)
    actions: list[int] = []
    done = False
    while not done:
        actions.append(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        obs, _, done, _, info = tiny_env.step(actions[-1])
    tiny_env.cache.entries.clear()  # forget it: the decision copy must leave it pending
    _, pending = evaluate(decisions, 4, actions)
    assert pending[EVALUATION_COST] == info["flops"] > 0


def test_a_ratio_that_empties_a_group_and_a_diverging_fine_tune_are_penalised(tiny_checkpoint: Path) -> None:
    env = PruneModelEnv(model=TINY, checkpoint=str(tiny_checkpoint), ratios=[0.0, 1.0], training={"finetune_epochs": 0}, failure_reward=-2.0)
    env.reset(seed=0)
    for _ in range(4):
        *_, reward, done, _, info = env.step(1)
    assert done and reward == -2.0 and info["error_kind"] == "invalid_design" and "group stem" in info["error"]
    diverging = PruneModelEnv(model=TINY, checkpoint=str(tiny_checkpoint), ratios=[0.5], training={"finetune_epochs": 1, "finetune_lr": 1e30})
    diverging.reset(seed=0)
    for _ in range(4):
        *_, reward, done, _, info = diverging.step(0)
    assert reward == -1.0 and info["error_kind"] == "non_finite_loss"


def test_a_lightning_checkpoint_loads_and_pretrained_weights_are_reused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    torch.save({"epoch": 3, "state_dict": {f"net.{k}": v for k, v in state.items()}}, tmp_path / "lightning.ckpt")
    net = TinyResNet()
    load_weights(net, tmp_path / "lightning.ckpt")
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())

    kwargs = {"model": TINY, "pretrain": {"epochs": 1}, "pretrain_dir": str(tmp_path / "pretrained"), "training": {"finetune_epochs": 0}}
    first = PruneModelEnv(**kwargs)
    weights = Path(first.pretrained_from)
    assert weights.parent == tmp_path / "pretrained" and json.loads(weights.with_suffix(".json").read_text())["pretrain"]["epochs"] == 1
    stamp = weights.stat().st_mtime_ns
    second = PruneModelEnv(**kwargs)  # the same model, data and budget: no training, the same weights
    assert second.pretrained_from == first.pretrained_from and weights.stat().st_mtime_ns == stamp
    assert all(torch.equal(a, b) for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values()))


def _prune_config(tmp_path: Path, tiny_checkpoint: Path) -> dict:
    return copy.deepcopy({
        "seed_everything": 0,
        "trainer": {"max_steps": 1, "default_root_dir": str(tmp_path / "runs"), "enable_progress_bar": False, "logger": True},
        "model": {"class_path": "nasprune.controller.RandomSearch"},
        "data": {
            "env_id": "nasprune/PruneModel-v0",
            "episodes_per_update": 2,
            "env_kwargs": {
                "model": TINY,
                "checkpoint": str(tiny_checkpoint),
                "flops_target": 0.5,
                "training": {"finetune_epochs": 1, "limit_train_batches": 2},
            },
        },
        "export": {"final_training": {"finetune_epochs": 1, "limit_train_batches": 3}},
    })


@pytest.mark.parametrize(
    ("path", "value", "key", "fragment"),
    [
        (["checkpoint"], "no/such/weights.pt", "data.env_kwargs.checkpoint", "does not exist"),
        (["model", "class_path"], "no_such_package.Net", "data.env_kwargs.model.class_path", "no_such_package"),
        (["model"], {"class_path": "torchvision.models.resnet18", "init_args": {"num_classes": 10}}, "data.env_kwargs.model", "input shape (1, 8, 8)"),
    ],
)
def test_bad_input_stops_the_run_before_any_search_with_one_line(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, path: list[str], value: object, key: str, fragment: str
) -> None:
    config = _prune_config(tmp_path, tiny_checkpoint)
    node = config["data"]["env_kwargs"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    if path == ["model"]:
        del config["data"]["env_kwargs"]["checkpoint"]  # a 3-channel ResNet-18 fed 1-channel digits
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(tmp_path / "bad.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nasprune: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"nasprune: error: {key}:") and fragment in lines[0]
    assert not (tmp_path / "runs" / "lightning_logs").exists()


# A fresh interpreter that refuses to import nasprune runs both exported files on the same input.
FRESH_PROCESS = WITHOUT_NASPRUNE + textwrap.dedent(
    """
    import json

    import numpy as np
    import onnxruntime
    import torch

    folder = sys.argv[1]
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    scripted = torch.jit.load(f"{folder}/model.ts")(x).detach().numpy()
    (onnx_out,) = onnxruntime.InferenceSession(f"{folder}/model.onnx").run(None, {"input": x.numpy()})
    assert np.abs(scripted - onnx_out).max() < 1e-4, np.abs(scripted - onnx_out).max()
    print(json.dumps({"shape": list(scripted.shape), "params": sum(p.numel() for p in torch.jit.load(f"{folder}/model.ts").parameters())}))
    """
)


@pytest.mark.slow
def test_a_prune_model_run_exports_files_that_load_without_nasprune(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(_prune_config(tmp_path, tiny_checkpoint)))
    main(["fit", "-c", str(tmp_path / "run.yaml")])
    (run_dir,) = (tmp_path / "runs" / "lightning_logs").glob("version_*")
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    best = max(history, key=lambda r: r["reward"])
    export = run_dir / "export"
    assert {p.name for p in export.iterdir()} == {"ratios.json", "model.ts", "model.onnx", "metrics.json"}
    assert json.loads((export / "ratios.json").read_text()) == best["ratios"]
    metrics = json.loads((export / "metrics.json").read_text())
    assert metrics["episode"] == best["episode"] and 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["latency_ms"] > 0
    assert metrics["flops"] <= 0.5 * 1.03 * TOTAL and metrics["final_training"]["limit_train_batches"] == 3

    main(["export", str(run_dir), "--out", str(tmp_path / "again")])  # the command does the same afterwards
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["flops"] == metrics["flops"]
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(export)], check=True, capture_output=True, text=True, cwd=tmp_path)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == {"shape": [4, 10], "params": metrics["params"]}


def test_a_network_is_built_from_a_factory_with_an_adapter() -> None:
    adapter = {"class_path": "torch.nn.Conv2d", "init_args": {"in_channels": 1, "out_channels": 3, "kernel_size": 1}}
    net = build_network({"class_path": "torchvision.models.resnet18", "init_args": {"num_classes": 10}}, adapter)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    groups = PrunableGroups(net, (1, 28, 28), 10)
    assert all(not g.name.startswith("adapter") for g in groups.groups)  # the adapter's 3 channels stay
    with pytest.raises(ConfigError, match="^model.init_args: torchvision.models.resnet18 refused"):
        build_network({"class_path": "torchvision.models.resnet18", "init_args": {"no_such_arg": 1}})
