"""Any user network, pruned group by group: its build, its weights, its prunable groups, its FLOPs by ratio.

torch-pruning's `DependencyGraph` finds the prunable groups: the layers whose channels must go
together (a conv, its BatchNorm, the next layer's input, and every layer feeding or reading a
residual add). One ratio per group is the decision a search makes. `GroupFlops` predicts the
FLOPs a ratio assignment leaves, exactly for conv and linear layers, without pruning anything,
so an environment can mask the ratios that cannot meet a hard budget before the episode ends.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
import torch_pruning as tp
from torch import nn

from nasprune.child.data import ChildDataModule
from nasprune.child.metrics import accuracy, count_flops, count_params, model_size_bytes
from nasprune.child.pipeline import ChildTraining, EvalResult, _fit, _module, quiet_lightning, timed_latency
from nasprune.child.prune import make_importance
from nasprune.config import ConfigError, dataclass_from_config, import_object

T = TypeVar("T")


class AdaptedNetwork(nn.Module):
    """`model(adapter(x))`: a model made for other inputs (3-channel images) fed the data (1-channel ones).

    A plain module so that it traces, scripts and exports like any torchvision model.
    """

    def __init__(self, adapter: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.adapter(x))


def build_module(spec: Mapping[str, Any] | nn.Module | None, key: str) -> nn.Module:
    """An `nn.Module` from `{class_path, init_args}` (the path may name a class or a factory function,
    e.g. `torchvision.models.resnet18`), or the module itself (LightningCLI builds class paths in
    env settings before the env sees them)."""
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ConfigError(key, f"expected a mapping with class_path and optional init_args, got {spec!r}")
    unknown = sorted(set(spec) - {"class_path", "init_args"})
    if unknown:
        raise ConfigError(key, f"unknown keys {unknown}; allowed: class_path, init_args")
    factory = import_object(str(spec["class_path"]), f"{key}.class_path")
    if not callable(factory):
        raise ConfigError(f"{key}.class_path", f"{spec['class_path']} is not a class or function")
    try:
        module = factory(**dict(spec.get("init_args") or {}))
    except ConfigError as err:
        raise err.under(f"{key}.init_args") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}.init_args", f"{spec['class_path']} refused them ({type(err).__name__}: {err})") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{key}.class_path", f"{spec['class_path']} returned a {type(module).__name__}, not an nn.Module")
    return module


def build_network(model: Mapping[str, Any] | nn.Module, adapter: Mapping[str, Any] | nn.Module | None = None, seed: int = 0) -> nn.Module:
    """The user's model, behind the input adapter when there is one; initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_module(model, "model")
        return AdaptedNetwork(build_module(adapter, "adapter"), net) if adapter is not None else net


def load_weights(net: nn.Module, path: str | Path, key: str = "checkpoint") -> None:
    """Load a `state_dict` file or a Lightning checkpoint into `net`.

    A Lightning checkpoint keeps the weights under `state_dict`, prefixed by the attribute that
    held the network (`net.` for nasprune's `ChildModule`); that one prefix is dropped when the
    keys carry it and `net` does not.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(key, f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch's own errors: all mean "not a weights file"
        raise ConfigError(key, f"{path} is not a state_dict or Lightning checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(key, f"{path} holds a {type(state).__name__}, not a state_dict")
    own = set(net.state_dict())
    prefixes = {k.split(".", 1)[0] for k in state}
    if len(prefixes) == 1 and not set(state) & own:
        prefix = f"{prefixes.pop()}."
        state = {k[len(prefix):]: v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(key, f"{path} does not fit the model: {' '.join(str(err).split())[:300]}") from None


@dataclass(frozen=True)
class PrunableGroup:
    """One decision: a torch-pruning group with AMC's description of it.

    `members` names every layer whose output channels the group removes (more than one across a
    residual add), in the network's order; the first gives the group its `name` and its described
    `in_channels`, `kernel` and `stride`. `channels` is the group's width (every coupled tensor's).
    """

    name: str
    channels: int
    in_channels: int
    kernel: int
    stride: int
    members: tuple[str, ...]

    def kept(self, ratio: float) -> int:
        """Channels left by `ratio`: torch-pruning's own count (`int(C · (1 − r))`)."""
        return int(self.channels * (1.0 - ratio))


def ignored_layers(net: nn.Module, num_classes: int, names: Sequence[str] = ()) -> list[nn.Module]:
    """Layers whose output channels stay: the classifier (the last conv/linear with one output per
    class), the input adapter and the layers named in `names`."""
    modules = dict(net.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ConfigError("ignored_layers", f"no layer named {missing[0]!r} in the model")
    out = [modules[name] for name in names]
    heads = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and _out_channels(m) == num_classes]
    if heads:
        out.append(heads[-1])
    if isinstance(net, AdaptedNetwork):
        out.append(net.adapter)
    return out


def _out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else cast(nn.Conv2d, module).out_channels  # the other prunable layers are convolutions


class PrunableGroups:
    """The prunable groups of `net` (torch-pruning's `DependencyGraph`, in the network's order) and
    the FLOPs any ratio per group leaves, computed without pruning.

    Each conv/linear layer costs `2 · positions · in/groups · out · kernel` (what `FlopCounterMode`
    counts); a group's ratio removes its channels from every coupled output and input (torch-pruning's
    index lists say how many input features one channel is: 1, or H·W after a flatten). Operations
    other than conv and linear are a constant (`fixed`): exact for CNNs, whose other ops (BatchNorm,
    pooling, adds) FlopCounterMode does not count.
    """

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], num_classes: int, ignored: Sequence[str] = ()) -> None:
        modules = dict(net.named_modules())
        names = {m: n for n, m in modules.items()}
        graph = tp.DependencyGraph().build_dependency(net, example_inputs=torch.zeros(1, *input_shape))
        skip = ignored_layers(net, num_classes, ignored)
        tp_groups = [
            g for g in graph.get_all_groups(ignored_layers=skip, root_module_types=(nn.Conv2d, nn.Linear)) if len(g[0].idxs) > 1
        ]
        order = {m: i for i, m in enumerate(modules.values())}
        # the network's order: by the first layer each group touches (torch-pruning's is the graph's)
        tp_groups.sort(key=lambda g: min(order[dep.target.module] for dep, _ in g if dep.target.module in order))
        self.layers = _layer_costs(net, input_shape)
        self.groups: list[PrunableGroup] = []
        # per group: the layers one of its channels takes outputs or inputs from, and how many
        self._out: list[dict[str, float]] = []
        self._in: list[dict[str, float]] = []
        for group in tp_groups:
            channels = len(group[0].idxs)
            outs: dict[str, float] = {}
            ins: dict[str, float] = {}
            for dep, idxs in group:
                name = names.get(dep.target.module)
                if name in self.layers:
                    (outs if graph.is_out_channel_pruning_fn(dep.handler) else ins)[name] = len(idxs) / channels
            self._out.append(outs)
            self._in.append(ins)
            members = tuple(sorted(outs, key=lambda n: order[modules[n]]))
            first = modules[members[0]]
            self.groups.append(
                PrunableGroup(
                    name=members[0],
                    channels=channels,
                    in_channels=first.in_features if isinstance(first, nn.Linear) else first.in_channels,
                    kernel=first.kernel_size[0] if isinstance(first, nn.Conv2d) else 1,
                    stride=first.stride[0] if isinstance(first, nn.Conv2d) else 1,
                    members=members,
                )
            )
        self.fixed = 0.0
        self.fixed = count_flops(net, input_shape) - self.flops([None] * len(self.groups))

    def __len__(self) -> int:
        return len(self.groups)

    def flops(self, ratios: Sequence[float | None]) -> float:
        """FLOPs with ratio `ratios[g]` in group g (None: unpruned)."""
        lost_out = dict.fromkeys(self.layers, 0.0)
        lost_in = dict.fromkeys(self.layers, 0.0)
        for g, ratio in enumerate(ratios):
            if ratio is None:
                continue
            removed = self.groups[g].channels - self.groups[g].kept(ratio)
            for name, share in self._out[g].items():
                lost_out[name] += removed * share
            for name, share in self._in[g].items():
                lost_in[name] += removed * share
        return self.fixed + sum(_layer_flops(cost, lost_in[name], lost_out[name]) for name, cost in self.layers.items())

    def owned(self, g: int) -> float:
        """Unpruned FLOPs of the layers whose outputs group g prunes: its share of the network."""
        return sum(_layer_flops(self.layers[name]) for name in self._out[g])


def _layer_costs(net: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int, int, float]]:
    """Per conv/linear layer: (in, out, conv groups, 2 · positions · kernel size), from one forward."""
    positions: dict[str, int] = {}
    layers = {n: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    hooks = [
        m.register_forward_hook(lambda mod, _, out, name=n: positions.__setitem__(name, out[0].numel() // _out_channels(mod)))
        for n, m in layers.items()
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    costs = {}
    for name, pos in positions.items():
        m = layers[name]
        if isinstance(m, nn.Linear):
            costs[name] = (m.in_features, m.out_features, 1, 2.0 * pos)
        else:
            costs[name] = (m.in_channels, m.out_channels, m.groups, 2.0 * pos * math.prod(m.kernel_size))
    return costs


def _layer_flops(cost: tuple[int, int, int, float], lost_in: float = 0.0, lost_out: float = 0.0) -> float:
    """`base · in/groups · out` after losing `lost_in` inputs and `lost_out` outputs; a depthwise conv
    keeps one input per group as its groups shrink with its outputs."""
    c_in, c_out, conv_groups, base = cost
    if conv_groups > 1 and conv_groups == c_in:
        return base * (c_out - lost_out)
    return base * (c_in - lost_in) / conv_groups * (c_out - lost_out)


def prune_network(
    net: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    ratios: Mapping[str, float] | float,
    importance: str = "l2",
    ignored: Sequence[str] = (),
) -> nn.Module:
    """Prune `net` in place and return it.

    `ratios` maps a group's name (`PrunableGroup.name`, one of its layers) to the share of its
    channels to remove: torch-pruning gives a whole group the ratio of the member it finds in
    `pruning_ratio_dict`. A single number instead is torch-pruning's global pruning: that share of
    all prunable channels, ranked across groups by `importance`.
    """
    modules = dict(net.named_modules())
    was_training = net.training
    net.eval()
    if isinstance(ratios, Mapping):
        settings: dict[str, Any] = {"pruning_ratio": 0.0, "pruning_ratio_dict": {modules[n]: r for n, r in ratios.items() if r > 0}}
    else:
        settings = {"pruning_ratio": float(ratios), "global_pruning": True}
    pruner = tp.pruner.BasePruner(
        net,
        torch.zeros(1, *input_shape, device=next(net.parameters()).device),
        importance=make_importance(importance),
        ignored_layers=ignored_layers(net, num_classes, ignored),
        **settings,
    )
    pruner.step()
    net.zero_grad(set_to_none=True)
    net.train(was_training)
    return net


@dataclass(frozen=True)
class Pretrain:
    """How the env trains a model that comes without a checkpoint (once; the weights are kept on disk)."""

    epochs: int = 3
    lr: float = 0.01
    optimizer: str = "adam"
    lr_scheduler: str = "onecycle"
    weight_decay: float = 0.0
    limit_train_batches: float | int = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError("epochs", f"must be a positive integer, got {self.epochs!r}")
        if not isinstance(self.seed, int):
            raise ConfigError("seed", f"must be an integer, got {self.seed!r}")
        self.training(ChildTraining())  # the optimizer, schedule and rates are checked like a child training's

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Pretrain | None) -> Pretrain:
        return dataclass_from_config(cls, config, "pretrain")

    def training(self, base: ChildTraining) -> ChildTraining:
        """`base` (for the accelerator, precision, …) with this budget; checked like any child training."""
        budget = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seed"}
        return replace(base, **budget, finetune_epochs=0, distill_alpha=0.0)


def _fingerprint(net: nn.Module, datamodule: ChildDataModule, pretrain: Pretrain) -> tuple[str, dict[str, Any]]:
    """A stable key of what the pretrained weights depend on: the network (its classes and layers,
    as `repr` lists them: the same whether the config built it or LightningCLI did), data and budget."""
    inner = net.model if isinstance(net, AdaptedNetwork) else net
    record = {
        "model": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "network": repr(net),
        "datamodule": {"class_path": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}", "init_args": dict(getattr(datamodule, "hparams", {}))},
        "pretrain": asdict(pretrain),
    }
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], json.loads(text)


def own_hyperparameters(fn: Callable[..., T]) -> Callable[..., T]:
    """Run `fn` in an empty `contextvars` context: an env built by LightningCLI is built inside
    Lightning's "given hyperparameters" context, which would hand the CLI's settings to every
    Lightning module or data module the env builds in its `__init__` instead of their own."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return contextvars.Context().run(fn, *args, **kwargs)

    return wrapper


def pretrained_network(
    net: nn.Module, datamodule: ChildDataModule, training: ChildTraining, pretrain: Pretrain, folder: Path
) -> tuple[nn.Module, str]:
    """`net` trained on `datamodule` by `pretrain`, or loaded from `folder` when that training was done
    before; returns it and the weights file (`<key>.pt`, described by `<key>.json`)."""
    key, record = _fingerprint(net, datamodule, pretrain)
    weights = folder / f"{key}.pt"
    if weights.is_file():
        load_weights(net, weights, "pretrain_dir")
        return net, str(weights)
    budget = pretrain.training(training)
    start = time.perf_counter()
    with quiet_lightning(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(pretrain.seed)
        _fit(_module(net, datamodule, budget, budget.lr), datamodule, budget, budget.epochs)
    record["seconds"] = time.perf_counter() - start
    record["val_accuracy"] = validation_accuracy(net, datamodule)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), weights)
    (folder / f"{key}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return net.eval(), str(weights)


def validation_accuracy(net: nn.Module, datamodule: ChildDataModule) -> float:
    return accuracy(net, datamodule.val_dataloader(), datamodule.num_classes)


def recalibrate_batchnorm(net: nn.Module, loader: Iterable[Any], batches: int) -> None:
    """Re-estimate every BatchNorm's running statistics on `batches` training batches (no gradients).

    Pruning changes what each BatchNorm sees, so its old statistics misjudge the pruned net;
    EagleEye (Li et al. 2020) showed that accuracy after this "adaptive BN" step ranks pruned
    candidates much as accuracy after fine-tuning does, at the cost of a few forward passes.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if batches < 1 or not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
    was_training = net.training
    net.train()
    device = next(net.parameters()).device
    with torch.no_grad():
        for x, _ in islice(loader, batches):
            net(x.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.train(was_training)


def prune_and_score(
    network: nn.Module,
    ratios: Mapping[str, float] | float,
    datamodule: ChildDataModule,
    training: ChildTraining,
    seed: int = 0,
    accuracy_unpruned: float = float("nan"),
    ignored: Sequence[str] = (),
    recalibration_batches: int = 0,
) -> EvalResult:
    """A copy of `network` pruned by `ratios` (per group name, or one global ratio: see `prune_network`),
    its BatchNorm statistics re-estimated on `recalibration_batches` training batches, fine-tuned
    (distilled from `network` with `training.distill_alpha` > 0) and scored on the validation split."""
    shape = tuple(datamodule.input_shape)
    seconds: dict[str, float] = {}
    with quiet_lightning(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        start = time.perf_counter()
        net = prune_network(copy.deepcopy(network), shape, datamodule.num_classes, ratios, training.importance, ignored)
        seconds["prune"] = time.perf_counter() - start
        if recalibration_batches > 0:
            start = time.perf_counter()
            recalibrate_batchnorm(net, datamodule.train_dataloader(), recalibration_batches)
            seconds["recalibrate"] = time.perf_counter() - start

        start = time.perf_counter()
        teacher = network.eval() if training.distill_alpha > 0 else None
        module = _module(net, datamodule, training, training.finetune_lr, teacher)
        _fit(module, datamodule, training, training.finetune_epochs)
        seconds["finetune"] = time.perf_counter() - start

        start = time.perf_counter()
        val_accuracy = validation_accuracy(net, datamodule)
        flops, params, size = count_flops(net, shape), count_params(net), model_size_bytes(net)
        seconds["score"] = time.perf_counter() - start
        latency = timed_latency(net, shape, training, seconds)
    return EvalResult(
        val_accuracy,
        flops,
        params,
        accuracy_unpruned,
        count_flops(network, shape),
        count_params(network),
        seconds,
        net.eval(),
        size_bytes=size,
        size_bytes_unpruned=model_size_bytes(network),
        latency_ms=latency,
    )
