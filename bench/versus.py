"""nasprune against what a user would do instead: five ways to one network within a FLOPs budget, on MNIST.

Per FLOPs budget (FLOPs of the delivered, pruned network; `FlopCounterMode`, 2×MACs) each method
delivers one network within it:

- `torch_pruning`: LeNet-5 (the classic compact MNIST CNN, and the size users of Torch-Pruning's
  tutorials prune), trained, pruned with torch-pruning to the budget — one ratio for every layer
  (`uniform`) and torch-pruning's global ranking (`global`), the one with the better mean
  *validation* accuracy reported — and fine-tuned;
- `arch_only`: the search below with every prune ratio fixed at 0;
- `arch_then_prune`: the `arch_only` pick at 4× this budget, pruned with one ratio for every layer
  to this budget and fine-tuned (the sequential pipeline the joint search replaces);
- `random`: `RandomSearch` over the joint space;
- `nasprune`: the REINFORCE controller over the joint space.

The searches run through the real CLI (`nasprune fit` on a config written from `search_config`):
NasPrune-v0 on a seeded MNIST subset, the budget-aware env (`mask_budget`: choices that cannot fit
are masked) and `HardBudgetReward` (validation accuracy within the budget), the same number of
child evaluations with the same child training for every searched method. The pick of a search is
its best-reward episode. Every delivered network is then trained again from scratch by its own
pipeline with the same total epochs (train `final.epochs`, prune, fine-tune `final.finetune_epochs`)
for each child seed and scored once on MNIST's 10,000 official test images — the only read of the
test split (searches and picks see the validation split only).

Every search and every final training is a JSON record of its own under `--work`, keyed by its
settings: a killed run continues where it stopped, and the table, `versus.json` and `versus.png`
are rebuilt from whatever records exist. One command per budget:

    python bench/versus.py --budget 100000     # the tight budget (and the same for 400000, 1600000)
    python bench/versus.py --report            # rebuild versus.md/.json/.png from the records
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nasprune.cli import run  # first: it imports the callbacks before nasprune.export does
from nasprune.child import ChildDataModule, ChildTraining, Design, MNISTDataModule, SearchSpace, evaluate_design
from nasprune.child.budget import FlopsCeiling
from nasprune.child.prune_model import prune_and_score
from nasprune.envs.prune_model_env import PruneModelEnv
from nasprune.export import held_out_accuracy
from prune_your_model import global_ratio, mean_std, uniform_ratio
from publish import publish  # bench/publish.py: scripts run from bench/ have it on sys.path

METHODS = ("torch_pruning", "arch_only", "arch_then_prune", "random", "nasprune")
JOINT = ("random", "nasprune")  # the searches over the joint space (architecture and prune ratios)
STRATEGIES = {"arch_only": "nasprune.controller.Reinforce", "random": "nasprune.controller.RandomSearch", "nasprune": "nasprune.controller.Reinforce"}
LOOSER = 4  # arch_then_prune starts from the arch_only pick at this many times the budget


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) as PyTorch users write it: ReLU and max-pooling, 28×28 input (padding 2)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# configs/nasbench201.yaml's controller, tuned on NAS-Bench-201 seeds none of this comparison uses, where its
# gain was at the smallest budgets (100 episodes): only episodes among the best tenth of the search so far
# (risk_seeking over risk_window, which here spans the whole search) teach
NASBENCH201_CONTROLLER: dict[str, Any] = {
    "hidden_size": 64, "embedding_size": 32, "lr": 0.03, "baseline_decay": 0.9, "entropy_weight": 0.01,
    "rank_advantages": True, "distinct_designs": True, "risk_seeking": 0.1, "risk_window": 128,
}


@dataclass(frozen=True)
class Settings:
    """Everything a record depends on; `full` is the published comparison, `tiny` the tests' one."""

    budgets: tuple[int, ...] = (100_000, 400_000, 1_600_000)
    root: str = "../shared/data"
    train_subset: int = 5000
    val_subset: int = 2000
    batch_size: int = 64
    search_space: dict[str, Any] = field(default_factory=lambda: {
        "num_layers": 4,
        "ops": ["conv3x3", "conv5x5", "sepconv3x3", "sepconv5x5", "maxpool3x3", "identity"],
        "widths": [8, 16, 32, 64],
        "prune_ratios": [0.0, 0.25, 0.5, 0.75],
        "stem_width": 4,
        "downsample": ["none", "stride", "maxpool"],
        "head_grid": 4,
        "prune_switch": True,  # the joint searches decide first whether to prune at all (arch_only has nothing to switch)
    })
    search_training: dict[str, Any] = field(default_factory=lambda: {"epochs": 1, "finetune_epochs": 1, "lr": 0.01, "finetune_lr": 0.003})
    evaluations: int = 40  # for every searched method alike: what fits ~2.5 h of one core (docs/versus.md)
    episodes_per_update: int = 2  # the ranks come from the whole search (risk_window): small batches, more updates
    controller: dict[str, Any] = field(default_factory=lambda: dict(NASBENCH201_CONTROLLER))
    # what bench/versus_sweep.py chose on search seeds this comparison does not report, over `controller`
    controller_tuned: dict[str, Any] = field(default_factory=lambda: {"lr": 0.01})
    search_seeds: tuple[int, ...] = (0, 1)
    final: dict[str, Any] = field(default_factory=lambda: {"epochs": 4, "finetune_epochs": 2, "lr": 0.01, "finetune_lr": 0.003})
    child_seeds: tuple[int, ...] = (0, 1, 2)

    def key(self, *parts: Any) -> str:
        """A short hash of these settings and `parts`: a record made with other settings is not reused."""
        # where the data lies is no setting of the comparison: records made from another checkout are reused;
        # the prune switch and the controller's tuning are parts of the keys of the searches that use them
        # alone (`search_key`): no other record depends on them
        space = {k: v for k, v in self.search_space.items() if k != "prune_switch"}
        shared = dataclasses.asdict(self) | {"budgets": None, "root": None, "search_space": space}
        del shared["controller_tuned"]
        text = json.dumps([shared, *parts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


SCALES = {
    "full": Settings(),
    "tiny": Settings(
        budgets=(100_000,), train_subset=256, val_subset=128, evaluations=2, episodes_per_update=2, search_seeds=(0,),
        search_training={"epochs": 1, "finetune_epochs": 0}, final={"epochs": 1, "finetune_epochs": 1}, child_seeds=(0,),
    ),
}


def datamodule(s: Settings) -> MNISTDataModule:
    return MNISTDataModule(root=s.root, train_subset=s.train_subset, val_subset=s.val_subset, batch_size=s.batch_size)


def final_training(s: Settings) -> ChildTraining:
    return ChildTraining(**s.final)


class Records:
    """One JSON file per finished search or final training; a missing or stale one is (re)made."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root, self.settings = root, settings

    def get(self, name: str, make: Callable[[], dict[str, Any]], *key_parts: Any) -> dict[str, Any]:
        kept = self.existing(name, *key_parts)
        if kept is not None:
            return kept
        value = {**make(), "key": self.settings.key(name, *key_parts), "load": os.getloadavg()[0]}
        path = self.root / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(value, indent=1))
        partial.replace(path)  # a kill mid-write leaves no half record
        return value

    def fetch(self, make: bool, name: str, maker: Callable[[], dict[str, Any]], *key_parts: Any) -> dict[str, Any] | None:
        """`get` when `make`, else only a record that exists (a report makes nothing)."""
        return self.get(name, maker, *key_parts) if make else self.existing(name, *key_parts)

    def existing(self, name: str, *key_parts: Any) -> dict[str, Any] | None:
        path = self.root / f"{name}.json"
        if not path.is_file():
            return None
        kept = json.loads(path.read_text())
        return kept if kept.get("key") == self.settings.key(name, *key_parts) else None


# --- the searches ------------------------------------------------------------------------------


def search_key(s: Settings, method: str, budget: float, seed: int) -> tuple[Any, ...]:
    """The key parts of a search's record (and run folder): a joint search's also name its prune switch
    when on, a controller search's the controller's tuning when there is one."""
    switch = ["prune_switch"] if method in JOINT and s.search_space.get("prune_switch") else []
    tuned = [s.controller_tuned] if STRATEGIES[method].endswith("Reinforce") and s.controller_tuned else []
    return (method, budget, seed, *switch, *tuned)


def search_config(s: Settings, method: str, budget: float) -> dict[str, Any]:
    """The CLI config of one search: what a user would write for NasPrune-v0 at this budget."""
    space = dict(s.search_space)
    if method == "arch_only":
        space["prune_ratios"], space["prune_switch"] = [0.0], False
    model: dict[str, Any] = {"class_path": STRATEGIES[method], "init_args": {}}
    if STRATEGIES[method].endswith("Reinforce"):
        model["init_args"] = s.controller | s.controller_tuned
    return {
        "model": model,
        "data": {
            "env_id": "nasprune/NasPrune-v0",
            "episodes_per_update": s.episodes_per_update,
            "env_kwargs": {
                "search_space": space,
                "datamodule": {
                    "class_path": "nasprune.child.MNISTDataModule",
                    "init_args": {"root": str(Path(s.root).resolve()), "train_subset": s.train_subset, "val_subset": s.val_subset, "batch_size": s.batch_size},
                },
                "training": s.search_training,
                "reward": {"class_path": "nasprune.child.HardBudgetReward", "init_args": {"budget": budget, "cost": "flops"}},
                "mask_budget": True,
            },
        },
    }


def run_search(s: Settings, method: str, budget: float, seed: int, work: Path) -> dict[str, Any]:
    """One search through `nasprune fit`; its history, wall time and pick (best-reward episode).

    A search killed midway continues from its last update (`--ckpt_path last`: the CLI replays
    nothing it trained); its run folder is named by the settings, so it never resumes another's."""
    root = work / "runs" / f"{method}_{budget:g}_{seed}_{s.key(*search_key(s, method, budget, seed))}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(search_config(s, method, budget)))
    versions = list(root.glob("lightning_logs/version_*"))
    resumable = [v for v in versions if (v / "checkpoints" / "last.ckpt").is_file()]
    for version in versions:
        if version not in resumable:  # killed before its first update's checkpoint: nothing to resume
            shutil.rmtree(version)
    start = time.perf_counter()
    run([
        "fit", "-c", str(root / "config.yaml"),
        f"--seed_everything={seed}",
        f"--trainer.max_steps={-(-s.evaluations // s.episodes_per_update)}",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--export.enabled=false",
        *(["--ckpt_path=last"] if resumable else []),
    ])
    seconds = time.perf_counter() - start
    history = [json.loads(line) for line in max(root.glob("lightning_logs/version_*/history.jsonl"), key=os.path.getmtime).read_text().splitlines()]
    if len(history) < s.evaluations:  # stopped early (a signal): no record, the next run resumes it
        raise SystemExit(f"{method} at {budget:g} FLOPs, seed {seed}: stopped after {len(history)} of {s.evaluations} episodes; run again to resume")
    if resumable:  # the wall time of the killed part is gone: count the evaluations' own time instead
        seconds = max(seconds, sum(r.get("seconds", 0.0) for r in history if not r.get("cached")))
    ok = [r for r in history if "error" not in r and r["flops"] <= budget]
    if not ok:
        raise RuntimeError(f"{method} at {budget:g} FLOPs, seed {seed}: no episode delivered a network within the budget")
    pick = max(ok, key=lambda r: r["reward"])
    distinct = [r for r in history if not r.get("cached")]
    return {
        "method": method, "budget": budget, "seed": seed, "seconds": seconds, "resumed": bool(resumable), "pick": {k: pick[k] for k in ("design", "design_str", "accuracy", "flops", "params", "reward")},
        "episodes": len(history), "evaluations": len(distinct), "over_budget": sum(1 for r in history if r.get("flops", 0) > budget),
        "child_epochs": len(distinct) * (s.search_training.get("epochs", 3) + s.search_training.get("finetune_epochs", 1)),
        "history": [{k: r.get(k) for k in ("design", "design_str", "accuracy", "flops", "reward", "cached", "error_kind")} for r in history],
    }


def uniformly_pruned(design: Design, budget: float, counter: FlopsCeiling) -> Design | None:
    """`design` with one prune ratio in every weighted layer: the smallest (by bisection) within
    `budget`; None when even one channel per layer is over it (the unpruned stem alone may be)."""
    def at(ratio: float) -> Design:
        return dataclasses.replace(design, layers=tuple(dataclasses.replace(layer, prune_ratio=ratio) if layer.width is not None else layer for layer in design.layers))

    if counter.pruned_flops(at(0.0)) <= budget:
        return at(0.0)
    low = 0.0
    high = 1.0 - 1.0 / min(layer.width for layer in design.layers if layer.width is not None) - 1e-6  # one channel left in the narrowest
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if counter.pruned_flops(at(mid)) > budget else (low, mid)
    return at(high) if counter.pruned_flops(at(high)) <= budget else None


def prune_looser_pick(search: dict[str, Any], budget: float, counter: FlopsCeiling) -> dict[str, Any]:
    """The looser search's best design that one ratio per layer brings within `budget`, pruned so:
    its pick, or where that cannot get there (a wide unpruned stem), the next best by reward."""
    ranked = sorted((r for r in search["history"] if r.get("design") and r.get("error_kind") is None), key=lambda r: -r["reward"])
    for rank, record in enumerate(ranked):
        pruned = uniformly_pruned(Design.from_dict(record["design"]), budget, counter)
        if pruned is not None:
            return {**search, "pick": {"design": pruned.to_dict(), "design_str": str(pruned), "looser_rank": rank}}
    return {**search, "pick": None, "reason": f"no design of the {search['budget']:g}-FLOPs search prunes uniformly to {budget:g} FLOPs"}


# --- the final trainings (the only place the test split is read) -----------------------------


def test_accuracy(net: nn.Module, data: ChildDataModule) -> float:
    """The final score: accuracy on MNIST's official test split."""
    return held_out_accuracy(net, data, data.num_classes)


def retrain_design(s: Settings, design: Design, seed: int) -> dict[str, Any]:
    """Train `design` from scratch, prune it by its ratios, fine-tune, score on validation and test."""
    data = datamodule(s)
    start = time.perf_counter()
    result = evaluate_design(design, data, final_training(s), s.search_space["stem_width"], seed)
    assert result.model is not None  # evaluate_design returns the pruned network
    return {"design_str": str(design), "val_acc": result.accuracy, "test_acc": test_accuracy(result.model, data),
            "flops": result.flops, "params": result.params, "seconds": time.perf_counter() - start}


def lenet_env(s: Settings, seed: int, work: Path) -> PruneModelEnv:
    """LeNet-5 trained `final.epochs` on the data (weights kept under `work`), ready to prune."""
    t = s.final
    return PruneModelEnv(
        model=LeNet5(),
        datamodule=datamodule(s),
        pretrain={"epochs": t["epochs"], "lr": t.get("lr", 0.01), "lr_scheduler": t.get("lr_scheduler", "none"), "seed": seed},
        pretrain_dir=str(work / "lenet"),
        training={k: v for k, v in t.items() if k not in ("epochs", "lr")},
    )


def retrain_lenet(s: Settings, budget: float, seed: int, work: Path) -> dict[str, Any]:
    """LeNet-5 pruned to `budget` both ways (one ratio per layer, torch-pruning's global), each fine-tuned and scored."""
    env = lenet_env(s, seed, work)
    start = time.perf_counter()
    variants: dict[str, dict[str, float] | float]
    if env.flops_unpruned <= budget:
        variants = {"uniform": 0.0}  # within the budget as it is: fine-tuned, not pruned
    else:
        tolerance = 0.03  # global_ratio's window (± tolerance / 3), its upper edge kept under the budget
        variants = {
            "uniform": env.ratio_map([uniform_ratio(env, budget * 0.999)] * len(env.groups)),
            "global": global_ratio(env, budget / (1 + tolerance / 3), tolerance),
        }
    out: dict[str, Any] = {"flops_unpruned": env.flops_unpruned, "solve_seconds": time.perf_counter() - start,
                           "unpruned_test_acc": test_accuracy(env.network, env.datamodule)}
    for name, ratios in variants.items():
        result = prune_and_score(env.network, ratios, env.datamodule, env.training, seed, env.accuracy_unpruned)
        assert result.model is not None  # prune_and_score returns the pruned network
        out[name] = {"ratios": ratios, "val_acc": result.accuracy, "test_acc": test_accuracy(result.model, env.datamodule),
                     "flops": result.flops, "params": result.params}
    out["seconds"] = time.perf_counter() - start
    return out


# --- one budget, from the records --------------------------------------------------------------

def budget_runs(s: Settings, budget: float, records: Records, work: Path, make: bool) -> dict[str, list[dict[str, Any]]]:
    """Per method, its final runs at `budget` (one per search seed × child seed): made where missing
    when `make`, else only those already recorded."""

    def fetch(name: str, maker: Callable[[], dict[str, Any]], *key: Any) -> dict[str, Any] | None:
        return records.fetch(make, name, maker, *key)

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    lenet = [fetch(f"final/torch_pruning_{budget:g}_{c}", lambda c=c: retrain_lenet(s, budget, c, work), budget, c) for c in s.child_seeds]
    done = [r for r in lenet if r is not None]
    if done:  # LeNet-5 pruned one way or the other
        # a variant that cannot reach the budget (global ranking may keep a costly conv whole) delivers nothing
        variants = [v for v in ("uniform", "global") if all(v in r and r[v]["flops"] <= budget for r in done)]
        if variants:
            best = max(variants, key=lambda v: statistics.fmean(r[v]["val_acc"] for r in done))  # chosen on validation, never test
            runs["torch_pruning"] = [{**r[best], "variant": best, "child_seed": c, "search_seconds": r["solve_seconds"], "child_epochs": 0}
                                     for c, r in zip(s.child_seeds, lenet) if r is not None]
    def delivered(method: str, seed: int) -> dict[str, Any] | None:
        """The search (or, for the sequential pipeline, the plan) whose pick `method` delivers."""
        if method != "arch_then_prune":
            return fetch(f"search/{method}_{budget:g}_{seed}", lambda: run_search(s, method, budget, seed, work), *search_key(s, method, budget, seed))
        looser = budget * LOOSER
        start = fetch(f"search/arch_only_{looser:g}_{seed}", lambda: run_search(s, "arch_only", looser, seed, work), *search_key(s, "arch_only", looser, seed))
        if start is None:
            return None
        return fetch(f"plan/arch_then_prune_{budget:g}_{seed}", lambda: prune_looser_pick(start, budget, flops_counter(s, budget)), start["pick"]["design"], budget)

    for seed in s.search_seeds:
        for method in ("nasprune", "random", "arch_only", "arch_then_prune"):  # each search's final trainings right after it
            search = delivered(method, seed)
            if search is None or search["pick"] is None:
                continue
            design = Design.from_dict(search["pick"]["design"])
            for c in s.child_seeds:
                final = fetch(f"final/{method}_{budget:g}_{seed}_{c}", lambda d=design, c=c: retrain_design(s, d, c), design.to_json(), c)
                if final is not None:
                    runs[method].append({**final, "search_seed": seed, "child_seed": c, "search_seconds": search["seconds"],
                                         "child_epochs": search["child_epochs"], "evaluations": search["evaluations"]})
    return runs


def flops_counter(s: Settings, budget: float) -> FlopsCeiling:
    """The budget mask's count of a design's pruned FLOPs (on MNIST's 1×28×28 input), as the searches mask and
    the env measures it (nothing is trained)."""
    return FlopsCeiling(SearchSpace(**s.search_space), (1, 28, 28), 10, budget)


def summary_rows(s: Settings, per_budget: dict[float, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """`versus.json`: one row per method and budget with at least one finished final run."""
    rows = []
    for budget, runs in per_budget.items():
        for method in METHODS:
            done = runs[method]
            if not done:
                continue
            mean, std = mean_std([100 * r["test_acc"] for r in done])
            rows.append({
                "method": method, "budget_flops": budget, "flops": statistics.fmean(r["flops"] for r in done),
                "params": statistics.fmean(r["params"] for r in done), "test_acc_mean": mean, "test_acc_std": std, "n_runs": len(done),
                "search_seconds": statistics.fmean(r["search_seconds"] for r in done),
                "search_child_epochs": statistics.fmean(r["child_epochs"] for r in done),
                "within_budget": all(r["flops"] <= budget for r in done),
                **({"variant": done[0]["variant"]} if method == "torch_pruning" else {}),
            })
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per budget: nasprune − the best other method (by mean test accuracy) and the standard error of that difference."""
    out = []
    for budget in sorted({r["budget_flops"] for r in rows}):
        at = {r["method"]: r for r in rows if r["budget_flops"] == budget}
        if "nasprune" not in at or len(at) < 2:
            continue
        others = [r for m, r in at.items() if m != "nasprune"]
        best = max(others, key=lambda r: r["test_acc_mean"])
        ours = at["nasprune"]
        diff = ours["test_acc_mean"] - best["test_acc_mean"]
        se = (ours["test_acc_std"] ** 2 / ours["n_runs"] + best["test_acc_std"] ** 2 / best["n_runs"]) ** 0.5
        out.append({"budget_flops": budget, "best_other": best["method"], "diff": diff, "se": se,
                    "at_least_as_accurate": diff >= 0, "ahead_beyond_se": diff > se, "complete": len(at) == len(METHODS)})
    return out


def search_diagnostics(s: Settings, budget: float, records: Records, runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per searched method at `budget`, what its searches saw (validation only) next to what its
    picks scored in the final trainings: why a method wins or loses, in numbers."""
    out = []
    for method in ("arch_only", "random", "nasprune"):
        searches = [r for seed in s.search_seeds if (r := records.existing(f"search/{method}_{budget:g}_{seed}", *search_key(s, method, budget, seed))) is not None]
        if not searches:
            continue
        evaluated = [[h for h in r["history"] if not h.get("cached") and h.get("error_kind") is None] for r in searches]
        done = runs[method]
        out.append({
            "method": method, "budget_flops": budget, "searches": len(searches),
            "distinct_designs": statistics.fmean(len(e) for e in evaluated),
            "episodes": statistics.fmean(r["episodes"] for r in searches),
            "search_val_acc_mean": 100 * statistics.fmean(h["accuracy"] for e in evaluated for h in e),
            "search_val_acc_top5": 100 * statistics.fmean(statistics.fmean(sorted(h["accuracy"] for h in e)[-5:]) for e in evaluated),
            "search_flops_over_budget_median": statistics.median(h["flops"] / budget for e in evaluated for h in e),
            "pick_search_val_acc": 100 * statistics.fmean(r["pick"]["accuracy"] for r in searches),
            "pick_flops_over_budget": statistics.fmean(r["pick"]["flops"] / budget for r in searches),
            "second_half_val_acc_mean": 100 * statistics.fmean(h["accuracy"] for e in evaluated for h in e[len(e) // 2 :]),
            **({"final_val_acc": 100 * statistics.fmean(r["val_acc"] for r in done), "final_test_acc": 100 * statistics.fmean(r["test_acc"] for r in done)} if done else {}),
        })
    return out


def front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (FLOPs, accuracy) points no other point beats on both (fewer FLOPs and higher accuracy)."""
    kept, best = [], float("-inf")
    for flops, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            kept.append((flops, acc))
            best = acc
    return kept


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        color = f"C{METHODS.index(method)}"  # a method keeps its colour whichever rows exist
        ax.errorbar([r["flops"] for r in mine], [r["test_acc_mean"] for r in mine], yerr=[r["test_acc_std"] for r in mine], fmt="o", capsize=3, label=method, color=color)
        pareto = front([(r["flops"], r["test_acc_mean"]) for r in mine])
        ax.plot([p[0] for p in pareto], [p[1] for p in pareto], "-", color=color, alpha=0.6)
    for budget in sorted({r["budget_flops"] for r in rows}):
        ax.axvline(budget, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs of the delivered network (dotted: budgets)")
    ax.set_ylabel("MNIST test accuracy %")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def searches_done(s: Settings, records: Records) -> tuple[int, int]:
    """(searches recorded, searches the comparison needs): every searched method at every budget,
    and `arch_only` at `LOOSER` × the largest for its sequential pipeline, per search seed."""
    needed = {(m, float(b)) for b in s.budgets for m in ("arch_only", "random", "nasprune")} | {("arch_only", float(LOOSER * max(s.budgets)))}
    done = sum(records.existing(f"search/{m}_{b:g}_{seed}", *search_key(s, m, b, seed)) is not None for m, b in needed for seed in s.search_seeds)
    return done, len(needed) * len(s.search_seeds)


def table(s: Settings, rows: list[dict[str, Any]], judged: list[dict[str, Any]], diagnostics: list[dict[str, Any]], command: str,
          loads: list[float], searches: tuple[int, int]) -> str:
    finals = sum(r["n_runs"] for r in rows), len(s.budgets) * len(s.child_seeds) * (1 + (len(METHODS) - 1) * len(s.search_seeds))
    complete = searches[0] == searches[1] and finals[0] == finals[1]
    lines = [
        "# nasprune against what a user would do instead (MNIST, FLOPs budgets)",
        "",
        f"Made by `{command}` (one budget: `--budget B`), rebuilt from its records by `{command} --report`. "
        + ("Every record exists." if complete else
           f"**Partial: {searches[0]} of {searches[1]} searches and {finals[0]} of {finals[1]} final trainings are recorded so far**; "
           "the rows below are what exists (a row's `runs` says how many of its final trainings)."),
        "",
        f"Searches: NasPrune-v0 on {s.train_subset} training / {s.val_subset} validation MNIST images, {s.evaluations} child evaluations each "
        f"({s.search_training}), {s.episodes_per_update} per update, seeds {list(s.search_seeds)}; budget-aware env (`mask_budget`) and `HardBudgetReward`; "
        f"the joint searches (`random`, `nasprune`) {'behind' if s.search_space.get('prune_switch') else 'without'} `prune_switch`; "
        f"the controller (`nasprune`, `arch_only`): {s.controller | s.controller_tuned}. "
        f"Final: every delivered network trained again from scratch ({s.final}), child seeds {list(s.child_seeds)}, scored on MNIST's "
        "10,000 test images. Test accuracy: mean ± std over search seeds × child seeds. Search s: wall time per search; "
        "child-epochs: epochs the search spent training children. "
        f"CPU, one torch thread, on a machine shared by several benchmarks (1-minute load {min(loads):.1f}–{max(loads):.1f} while the records were made).",
        "",
        "| budget FLOPs | method | test acc % | runs | FLOPs | params | search s | search child-epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["budget_flops"], METHODS.index(r["method"]))):
        name = r["method"] + (f" ({r['variant']})" if "variant" in r else "")
        lines.append(
            f"| {r['budget_flops']:,.0f} | {name} | {r['test_acc_mean']:.2f} ± {r['test_acc_std']:.2f} | {r['n_runs']} | {r['flops']:,.0f} | "
            f"{r['params']:,.0f} | {r['search_seconds']:.0f} | {r['search_child_epochs']:.0f} |"
        )
    lines.append("")
    for v in judged:
        state = "" if v["complete"] else " (not every method finished yet)"
        lines.append(
            f"- {v['budget_flops']:,.0f} FLOPs: nasprune − {v['best_other']} (best other) = {v['diff']:+.2f} ± {v['se']:.2f} points "
            f"(SE of the difference){state}: {'ahead beyond the SE' if v['ahead_beyond_se'] else 'at least as accurate' if v['at_least_as_accurate'] else 'behind'}"
        )
    if diagnostics:
        lines += [
            "",
            "## What the searches saw (validation accuracy %, means over search seeds)",
            "",
            "distinct: designs trained per search; all / 2nd half / top 5: mean validation accuracy of its evaluations, of those in its "
            "second half, of its five best; FLOPs/budget: median over its evaluations; pick: the best-reward design's search validation "
            "accuracy and FLOPs/budget; final val / test: the pick retrained by the final pipeline.",
            "",
            "| budget FLOPs | method | distinct | all | 2nd half | top 5 | FLOPs/budget | pick | pick FLOPs/budget | final val | final test |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for d in sorted(diagnostics, key=lambda d: (d["budget_flops"], METHODS.index(d["method"]))):
            final = f"{d['final_val_acc']:.2f} | {d['final_test_acc']:.2f}" if "final_val_acc" in d else "— | —"
            lines.append(
                f"| {d['budget_flops']:,.0f} | {d['method']} | {d['distinct_designs']:.0f} | {d['search_val_acc_mean']:.1f} | {d['second_half_val_acc_mean']:.1f} | "
                f"{d['search_val_acc_top5']:.1f} | {d['search_flops_over_budget_median']:.2f} | {d['pick_search_val_acc']:.1f} | {d['pick_flops_over_budget']:.2f} | {final} |"
            )
    return "\n".join(lines) + "\n"


def report(s: Settings, records: Records, work: Path, out: str, command: str) -> list[dict[str, Any]]:
    """Rebuild versus.md, versus.json and versus.png from the records there are."""
    per_budget = {float(b): budget_runs(s, float(b), records, work, make=False) for b in s.budgets}
    rows = summary_rows(s, per_budget)
    loads = [json.loads(p.read_text()).get("load", 0.0) for p in records.root.rglob("*.json")] or [os.getloadavg()[0]]
    Path(out + ".json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if rows:
        plot(rows, Path(out + ".png"))
    diagnostics = [d for b, runs in per_budget.items() for d in search_diagnostics(s, b, records, runs)]
    publish(table(s, rows, verdicts(rows), diagnostics, command, loads, searches_done(s, records)), out + ".md")
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--budget", type=float, action="append", help="a budget (FLOPs) of the scale to run; repeatable (default: all)")
    parser.add_argument("--report", action="store_true", help="only rebuild the outputs from the records")
    parser.add_argument("--work", default="runs/versus", help="the search runs (their checkpoints: a killed search continues)")
    parser.add_argument("--records", default="bench/results/versus_records",
                        help="one small JSON per finished search or final training, kept with the results so that a fresh checkout continues the comparison")  # fmt: skip
    parser.add_argument("--out", default="bench/results/versus")
    parser.add_argument("--data-root", help="the folder holding MNIST/raw (default: ../shared/data from the project root)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    s = SCALES[args.scale] if args.data_root is None else dataclasses.replace(SCALES[args.scale], root=args.data_root)
    for budget in args.budget or ():
        if budget not in s.budgets:
            parser.error(f"--budget {budget:g} is not a budget of scale {args.scale}: {list(s.budgets)}")
    work = Path(args.work) / args.scale
    records = Records(Path(args.records) / args.scale, s)
    command = shlex.join(["python", "bench/versus.py", *(["--scale", args.scale] if args.scale != "full" else [])])
    if not args.report:
        for budget in args.budget or s.budgets:
            budget_runs(s, float(budget), records, work, make=True)
            report(s, records, work, args.out, command)  # after each budget: the outputs show what is done
    report(s, records, work, args.out, command)


if __name__ == "__main__":
    main()
