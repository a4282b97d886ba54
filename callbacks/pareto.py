"""Accuracy against cost for every evaluated design, with the non-dominated front drawn."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter

from nasprune.callbacks.publish import PeriodicPublisher, log_figure

# cost metrics in order of preference: a measured latency beats a FLOPs count
COST_KEYS = ("latency_ms", "flops")
AXIS_LABELS = {
    "accuracy": "validation accuracy",
    "flops": "FLOPs per example",
    "params": "parameters",
    "latency_ms": "measured CPU latency (ms per batch)",
    "valid_acc_12ep": "validation accuracy after 12 epochs (%)",
    "latency_ms_pixel3": "latency on a Pixel 3 (ms)",
    "latency_ms_raspi4": "latency on a Raspberry Pi 4 (ms)",
}


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points (lower cost, higher accuracy), by increasing cost.

    A point is dominated when another is at least as good on both axes and better on one.
    """
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -accuracies[i]))
    front: list[int] = []
    for i in order:
        if not front or accuracies[i] > accuracies[front[-1]]:
            front.append(i)
    return front


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choose_cost_key(records: Sequence[dict[str, Any]], cost_key: str | None = None) -> str | None:
    """`cost_key` if given, else the first of `COST_KEYS` the records carry (None: nothing to plot)."""
    candidates = (cost_key,) if cost_key else COST_KEYS
    return next((key for key in candidates if any(_finite(r.get(key)) for r in records)), None)


def draw_pareto(ax: Axes, records: Sequence[dict[str, Any]], accuracy_key: str, cost_key: str) -> None:
    """Every design a point coloured by episode; the front a step line (each step a better trade)."""
    points = [r for r in records if _finite(r.get(cost_key)) and _finite(r.get(accuracy_key))]
    costs = [float(r[cost_key]) for r in points]
    accuracies = [float(r[accuracy_key]) for r in points]
    episodes = [r.get("episode", i) for i, r in enumerate(points)]
    scatter = ax.scatter(costs, accuracies, c=episodes, cmap="viridis", s=18, alpha=0.8, edgecolors="none")
    front = pareto_front(costs, accuracies)
    ax.plot(
        [costs[i] for i in front],
        [accuracies[i] for i in front],
        color="tab:red",
        marker="o",
        markerfacecolor="none",
        drawstyle="steps-post",
        label=f"Pareto front ({len(front)} designs)",
    )
    if costs and min(costs) > 0 and max(costs) / min(costs) > 100:  # decades apart: a log axis has ticks at each
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels crowd into each other
    ax.xaxis.set_major_formatter(EngFormatter())  # 250k FLOPs, 2.5 ms: short and exact enough
    ax.set_xlabel(AXIS_LABELS.get(cost_key, cost_key))
    ax.set_ylabel(AXIS_LABELS.get(accuracy_key, accuracy_key))
    ax.set_title(f"{len(points)} evaluated designs")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.figure.colorbar(scatter, ax=ax, label="episode")


def pareto_figure(records: Sequence[dict[str, Any]], accuracy_key: str, cost_key: str) -> Figure:
    """A stand-alone figure (no pyplot: nothing global, safe inside a training loop)."""
    figure = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    draw_pareto(figure.add_subplot(), records, accuracy_key, cost_key)
    return figure


class ParetoPlot(PeriodicPublisher):
    """Logs `search/pareto` as an image every `every_n_updates` updates and at the end of training.

    The x axis is `cost` (`latency_ms` when measured, else `flops`, unless set); the y axis is
    `accuracy` (for NAS-Bench-201 set it to `valid_acc_12ep`). Episodes without both are left out,
    and nothing is drawn until some have both.
    """

    def __init__(self, every_n_updates: int = 10, accuracy: str = "accuracy", cost: str | None = None, tag: str = "search/pareto") -> None:
        super().__init__(every_n_updates, "pareto")
        self.accuracy = accuracy
        self.cost = cost
        self.tag = tag

    def _publish(self, trainer: pl.Trainer, update: int) -> None:
        cost_key = choose_cost_key(self.records, self.cost)
        if cost_key is None or not any(_finite(r.get(self.accuracy)) for r in self.records):
            return
        figure = pareto_figure(self.records, self.accuracy, cost_key)
        for logger in trainer.loggers:
            log_figure(logger, self.tag, figure, update)
        self._logged_update = update
