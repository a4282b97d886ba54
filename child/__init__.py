"""Child networks: search space and design, model builder, data, training, pruning, scoring, rewards."""

from nasprune.child.data import (
    ChildDataModule,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNISTDataModule,
    TorchvisionDataModule,
)
from nasprune.child.distill import distillation_loss
from nasprune.child.metrics import count_flops, count_params, count_zeros, measure_latency, model_size_bytes
from nasprune.child.model import ChildNet, build_model
from nasprune.child.module import ChildModule
from nasprune.child.pipeline import ChildTraining, EvalResult, evaluate_design
from nasprune.child.prune import IMPORTANCES, prune_child
from nasprune.child.quantize import add_fake_quant, bitops, remove_fake_quant, size_bits
from nasprune.child.rewards import AMCReward, HardBudgetReward, LinearReward, MnasNetReward, Reward, TargetWindowReward
from nasprune.child.search_space import Design, LayerDesign, SearchSpace
from nasprune.child.sparsity import AGPSparsity, agp_sparsity, apply_sparsity

__all__ = [
    "AGPSparsity",
    "AMCReward",
    "CIFAR10DataModule",
    "ChildDataModule",
    "ChildModule",
    "ChildNet",
    "ChildTraining",
    "Design",
    "DigitsDataModule",
    "EvalResult",
    "FashionMNISTDataModule",
    "HardBudgetReward",
    "IMPORTANCES",
    "LayerDesign",
    "LinearReward",
    "MNISTDataModule",
    "MnasNetReward",
    "Reward",
    "SearchSpace",
    "TargetWindowReward",
    "TorchvisionDataModule",
    "add_fake_quant",
    "agp_sparsity",
    "apply_sparsity",
    "bitops",
    "build_model",
    "count_flops",
    "count_params",
    "count_zeros",
    "distillation_loss",
    "evaluate_design",
    "measure_latency",
    "model_size_bytes",
    "prune_child",
    "remove_fake_quant",
    "size_bits",
]
