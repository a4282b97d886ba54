"""Child networks: search space and design, model builder, training, pruning, scoring, rewards."""

from nasprune.child.data import ChildDataModule, DigitsDataModule
from nasprune.child.metrics import count_flops, count_params
from nasprune.child.model import ChildNet, build_model
from nasprune.child.module import ChildModule
from nasprune.child.pipeline import ChildTraining, EvalResult, evaluate_design
from nasprune.child.prune import prune_child
from nasprune.child.rewards import LinearReward, Reward
from nasprune.child.search_space import Design, LayerDesign, SearchSpace

__all__ = [
    "ChildDataModule",
    "ChildModule",
    "ChildNet",
    "ChildTraining",
    "Design",
    "DigitsDataModule",
    "EvalResult",
    "LayerDesign",
    "LinearReward",
    "Reward",
    "SearchSpace",
    "build_model",
    "count_flops",
    "count_params",
    "evaluate_design",
    "prune_child",
]
