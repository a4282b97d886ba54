"""`nasprune report RUN_DIR`: one picture and one page that explain a finished search.

`report.png`: the reward per episode with the per-update mean and the controller's baseline;
the Pareto front of accuracy against cost; the best reward so far against episodes.
`report.md`: the command that made the run, its budget and wall time, the best design (and its
export, when there is one) and the top-k table. Both are written into the run directory.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

import yaml
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from nasprune.callbacks.pareto import choose_cost_key, draw_pareto
from nasprune.callbacks.top_k import TOP_K_COLUMNS, design_label, markdown_table, top_k_rows
from nasprune.config import ConfigError
from nasprune.records import read_history

COMMAND_FILE = "command.txt"


def read_scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a TensorBoard scalar in the run's event files; empty when it was not logged."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _draw_rewards(ax: Axes, records: Sequence[dict[str, Any]], baseline: Sequence[tuple[int, float]]) -> None:
    episodes = [r["episode"] for r in records]
    ax.scatter(episodes, [r["reward"] for r in records], s=10, color="0.6", alpha=0.6, label="episode reward")
    by_update: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_update[record["update"]].append(record)
    updates = sorted(by_update)
    centres = [sum(r["episode"] for r in by_update[u]) / len(by_update[u]) for u in updates]
    ax.plot(centres, [sum(r["reward"] for r in by_update[u]) / len(by_update[u]) for u in updates], color="tab:blue", label="mean per update")
    baseline_by_update = dict(baseline)
    points = [(c, baseline_by_update[u]) for c, u in zip(centres, updates) if u in baseline_by_update]
    if points:
        ax.plot(*zip(*points), color="tab:orange", linestyle="--", label="baseline (before the update)")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.set_title("Reward")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")


def _draw_best(ax: Axes, records: Sequence[dict[str, Any]]) -> None:
    episodes = [r["episode"] for r in records]
    best = list(accumulate((r["reward"] for r in records), max))
    ax.step(episodes, best, where="post", color="tab:green")
    top = max(records, key=lambda r: r["reward"])
    ax.plot([top["episode"]], [top["reward"]], marker="*", markersize=12, color="tab:red", linestyle="none", label=f"best: episode {top['episode']}")
    ax.set_xlabel("episode")
    ax.set_ylabel("best reward so far")
    ax.set_title("Best so far")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")


def report_figure(
    records: Sequence[dict[str, Any]],
    baseline: Sequence[tuple[int, float]],
    title: str,
    accuracy_key: str = "accuracy",
    cost_key: str | None = None,
) -> Figure:
    """Reward with baseline, Pareto front, best so far; the Pareto axes as the run's `pareto` callback had them."""
    figure = Figure(figsize=(18, 5.3), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize="x-large")
    reward_ax, pareto_ax, best_ax = figure.subplots(1, 3)
    _draw_rewards(reward_ax, records, baseline)
    cost_key = choose_cost_key(records, cost_key)
    if cost_key is not None and any(isinstance(r.get(accuracy_key), (int, float)) for r in records):
        draw_pareto(pareto_ax, records, accuracy_key, cost_key)
        pareto_ax.set_title(f"Pareto front: {pareto_ax.get_title()}")
    else:
        pareto_ax.text(0.5, 0.5, "no accuracy and cost metrics in this run", ha="center", va="center", transform=pareto_ax.transAxes)
        pareto_ax.set_axis_off()
    _draw_best(best_ax, records)
    return figure


def _wall_time(run_dir: Path) -> float | None:
    """Seconds the run's processes ran, summed over the first run and its resumes (not the time
    between a kill and its resume): each process writes its own TensorBoard file, from its
    creation (the time in its name) to its last write. None without TensorBoard files."""
    spans = []
    for events in run_dir.glob("events.out.tfevents.*"):
        created = events.name.split(".")[3]
        if created.isdigit():
            spans.append(max(0.0, events.stat().st_mtime - int(created)))
    return sum(spans) if spans else None


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def report_markdown(run_dir: Path, records: Sequence[dict[str, Any]], config: dict[str, Any], png_name: str, k: int) -> str:
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    per_update = data.get("episodes_per_update")
    max_steps = trainer.get("max_steps")
    budget = f"{max_steps} updates × {per_update} per update = {max_steps * per_update} episodes" if max_steps and max_steps > 0 and per_update else "not fixed (no max_steps)"
    command_file = run_dir / COMMAND_FILE
    commands = command_file.read_text(encoding="utf-8").splitlines() if command_file.is_file() else []
    command = commands[0] if commands else "unknown (not recorded)"
    updates = len({r["update"] for r in records})
    best = max(records, key=lambda r: r["reward"])
    strategy = (config.get("model") or {}).get("class_path", "unknown")
    lines = [
        f"# Search report: `{run_dir}`",
        "",
        f"- **Command:** `{command}`",
        *([f"- **Resumed** {len(commands) - 1} times, last with: `{commands[-1]}`"] if len(commands) > 1 else []),
        f"- **Environment:** `{data.get('env_id', 'unknown')}`; **strategy:** `{strategy}`; **seed:** {config.get('seed_everything')}",
        f"- **Budget:** {budget}; **played:** {len(records)} episodes in {updates} updates",
        f"- **Wall time:** {_duration(_wall_time(run_dir))} of running processes (sum of episode times {_duration(sum(r.get('seconds', 0.0) for r in records))})",
        f"- **Failed episodes:** {sum('error' in r for r in records)}",
        f"- **Best:** reward {best['reward']:.4f} at episode {best['episode']}: `{design_label(best)}`",
    ]
    export = run_dir / "export" / "metrics.json"
    if export.is_file():
        metrics = json.loads(export.read_text(encoding="utf-8"))
        lines.append(
            f"- **Exported** (`export/`, final training {metrics['final_training']['epochs']}+{metrics['final_training']['finetune_epochs']} epochs): "
            f"test accuracy {metrics['test_accuracy']:.4f}, validation accuracy {metrics['val_accuracy']:.4f}, "
            f"{metrics['params']:,} params, {metrics['flops']:,} FLOPs, {metrics['latency_ms']:.3f} ms ({metrics['latency_device']})"
        )
    lines += ["", f"## Top {k} designs", "", markdown_table(TOP_K_COLUMNS, top_k_rows(records, k)), "", f"![report]({png_name})", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, k: int = 10) -> tuple[Path, Path]:
    """Write `report.png` and `report.md` (into `out_dir`, by default the run directory); return their paths."""
    run_dir = Path(run_dir)
    history = run_dir / "history.jsonl"
    if not history.is_file():
        raise ConfigError("RUN_DIR", f"{run_dir} has no history.jsonl; give a run directory such as runs/digits/lightning_logs/version_0")
    records = read_history(history)
    if not records:
        raise ConfigError("RUN_DIR", f"{history} holds no finished episode")
    config_path = run_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}) if config_path.is_file() else {}
    pareto = config.get("pareto") or {}
    target = Path(out_dir) if out_dir is not None else run_dir
    target.mkdir(parents=True, exist_ok=True)
    png, md = target / "report.png", target / "report.md"
    data = config.get("data") or {}
    title = f"{run_dir}: {data.get('env_id', 'unknown env')}, {len(records)} episodes"
    figure = report_figure(records, read_scalars(run_dir, "search/baseline"), title, pareto.get("accuracy") or "accuracy", pareto.get("cost"))
    figure.savefig(png)
    md.write_text(report_markdown(run_dir, records, config, png.name, k), encoding="utf-8")
    return png, md

