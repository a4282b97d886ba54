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
from nasprune.child.quantize import QuantizationReport, quantization_report, quantize_dynamic_int8
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
    "QuantizationReport",
    "Reward",
    "SearchSpace",
    "TargetWindowReward",
    "TorchvisionDataModule",
    "agp_sparsity",
    "apply_sparsity",
    "build_model",
    "count_flops",
    "count_params",
    "count_zeros",
    "distillation_loss",
    "evaluate_design",
    "measure_latency",
    "model_size_bytes",
    "prune_child",
    "quantization_report",
    "quantize_dynamic_int8",
]
