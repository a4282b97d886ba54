"""What a search shows while it runs: curves, the top-k table, the Pareto figure, hparams, the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.util import tensor_util

from nasprune.callbacks.pareto import choose_cost_key, pareto_front, pareto_figure
from nasprune.callbacks.publish import figure_to_array
from nasprune.callbacks.top_k import TOP_K_COLUMNS, design_label, top_k_rows
from nasprune.cli import main
from test_cli import SEARCH_TAGS

EPISODE_TAGS = {"episode/reward", "episode/length", "episode/accuracy", "episode/flops", "episode/params", "episode/reward/cost_term"}


def read_history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def events(tiny_search_run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(tiny_search_run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_curves_have_the_exact_tags_and_monotonic_steps(events: EventAccumulator, tiny_search_run: Path) -> None:
    scalars = set(events.Tags()["scalars"])
    assert SEARCH_TAGS | EPISODE_TAGS | {"hp_metric"} <= scalars
    for tag in SEARCH_TAGS:
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2], tag
    for tag in EPISODE_TAGS:
        assert [e.step for e in events.Scalars(tag)] == list(range(3)), tag
    history = read_history(tiny_search_run)
    assert [e.value for e in events.Scalars("episode/reward")] == pytest.approx([h["reward"] for h in history])
    # loss = policy loss − entropy_weight · entropy, every update (digits.yaml: entropy_weight 0.001)
    for loss, policy, entropy in zip(*(events.Scalars(f"search/{t}") for t in ("loss", "policy_loss", "entropy"))):
        assert loss.value == pytest.approx(policy.value - 0.001 * entropy.value, abs=1e-6)


def test_hparams_are_logged_once_with_the_best_reward_as_metric(events: EventAccumulator, tiny_search_run: Path) -> None:
    content = events.PluginTagToContent("hparams")
    assert set(content) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["hp_metric"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(0.01)
    assert start.hparams["episodes_per_update"].number_value == 1
    history = read_history(tiny_search_run)
    running_best = [max(h["reward"] for h in history[: u + 1]) for u in range(3)]
    metric = events.Scalars("hp_metric")
    assert metric[0].value == -1  # Lightning's placeholder, written with the hparams at the start
    assert [(e.step, e.value) for e in metric[1:]] == [(u, pytest.approx(b)) for u, b in enumerate(running_best)]


def test_top_k_table_is_markdown_text_refreshed_every_two_updates_and_at_the_end(events: EventAccumulator, tiny_search_run: Path) -> None:
    assert "search/top_k/text_summary" in events.PluginTagToContent("text")
    tables = events.Tensors("search/top_k/text_summary")
    assert [t.step for t in tables] == [1, 2]
    markdown = tensor_util.make_ndarray(tables[-1].tensor_proto)[0].decode()
    lines = markdown.splitlines()
    assert lines[0] == "| " + " | ".join(TOP_K_COLUMNS) + " |"
    history = read_history(tiny_search_run)
    best_per_design: dict[str, float] = {}
    for h in history:
        best_per_design[h["design_str"]] = max(best_per_design.get(h["design_str"], -np.inf), h["reward"])
    expected = sorted(best_per_design, key=best_per_design.get, reverse=True)[:10]
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    assert [row[0] for row in rows] == [str(i) for i in range(1, len(expected) + 1)]
    assert [row[5].replace("\\|", "|") for row in rows] == expected
    assert [float(row[1]) for row in rows] == pytest.approx([best_per_design[d] for d in expected], abs=5e-5)
    first = next(h for h in history if h["design_str"] == expected[0] and h["reward"] == best_per_design[expected[0]])
    assert rows[0][2] == f"{first['accuracy']:.4f}" and rows[0][3] == f"{first['flops']:,}" and rows[0][4] == f"{first['params']:,}"


def test_pareto_figure_is_an_image_every_two_updates_and_at_the_end(events: EventAccumulator) -> None:
    images = events.Images("search/pareto")
    assert [i.step for i in images] == [1, 2]
    picture = Image.open(io.BytesIO(images[-1].encoded_image_string))
    assert picture.format == "PNG" and picture.size == (640, 480)
    assert len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0)) > 50  # drawn, not blank


def test_pareto_front_by_hand() -> None:
    costs = [3.0, 1.0, 2.0, 2.0, 5.0, 1.0]
    accuracies = [0.9, 0.5, 0.7, 0.6, 0.9, 0.4]
    # by cost: (1, .5) kept, (1, .4) dominated, (2, .7) kept, (2, .6) dominated, (3, .9) kept, (5, .9) dominated
    assert pareto_front(costs, accuracies) == [1, 2, 0]
    assert pareto_front([], []) == []


def test_top_k_rows_rank_distinct_designs_and_leave_out_failures() -> None:
    records = [
        {"episode": 0, "reward": 0.5, "accuracy": 0.6, "flops": 1000, "params": 10, "design_str": "a"},
        {"episode": 1, "reward": 0.7, "accuracy": 0.8, "flops": 1000, "params": 10, "design_str": "a"},
        {"episode": 2, "reward": 0.6, "accuracy": 0.65, "flops": 2000, "params": 20, "design_str": "b"},
        {"episode": 3, "reward": 2.0, "error": "boom", "design_str": "c"},
        {"episode": 4, "reward": 0.1, "actions": [1, 0, 2]},
    ]
    assert top_k_rows(records, 2) == [
        ["1", "0.7000", "0.8000", "1,000", "10", "a", "1", "2"],
        ["2", "0.6000", "0.6500", "2,000", "20", "b", "2", "1"],
    ]
    assert top_k_rows(records, 10)[-1][1:] == ["0.1000", "–", "–", "–", "1 0 2", "4", "1"]
    assert design_label({"actions": list(range(100))}, max_length=20) == "0 1 2 3 4 5 6 7 8 9…"


def test_pareto_prefers_latency_when_measured() -> None:
    records = [{"episode": i, "accuracy": a, "flops": f, "latency_ms": l} for i, (a, f, l) in enumerate([(0.5, 10, 1.0), (0.9, 30, 2.0)])]
    assert choose_cost_key(records) == "latency_ms"
    assert choose_cost_key([{k: v for k, v in r.items() if k != "latency_ms"} for r in records]) == "flops"
    assert choose_cost_key([{"reward": 1.0}]) is None
    image = figure_to_array(pareto_figure(records, "accuracy", "latency_ms"))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8


def test_progress_bar_counts_episodes_in_place_of_lightnings_batch_bar(repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    main(
        [
            "fit",
            "-c",
            str(repo / "configs" / "cartpole.yaml"),
            "--trainer.max_steps=2",
            f"--trainer.default_root_dir={tmp_path / 'cartpole'}",
        ]
    )
    out = capfd.readouterr().out
    assert "search" in out and "16/16 episodes · best reward" in out
    assert "Epoch 0" not in out  # Lightning's batch bar is replaced, not doubled


@pytest.mark.slow  # 16–24 s on a shared 2-core machine: two real child trainings
def test_child_trainings_stay_quiet_but_log_their_curves_when_asked(
    repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture, tiny_env_kwargs: dict
) -> None:
    import yaml

    config = yaml.safe_load((repo / "configs" / "digits.yaml").read_text())
    config["data"]["env_kwargs"].update(tiny_env_kwargs)
    config["data"]["env_kwargs"]["training"].update(epochs=2, log_curves=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "-c", str(path), "--trainer.max_steps=1", "--data.episodes_per_update=2", "--export.enabled=false", f"--trainer.default_root_dir={tmp_path}"])
    captured = capfd.readouterr()
    assert "2/2 episodes · best reward" in captured.out
    text = captured.out + captured.err
    # each child's fit would print these; inside a search they must not
    for noise in ("GPU available", "LOCAL_RANK", "max_epochs=", "Validation DataLoader", "┃ Validate metric", "Epoch 0"):
        assert noise not in text, noise

    run_dir = tmp_path / "lightning_logs" / "version_0"
    history = read_history(run_dir)
    events = EventAccumulator(str(run_dir))
    events.Reload()
    # epoch e of episode i at step i × epochs + e: training has 2 epochs, fine-tuning 1
    for stage, epochs in (("train", 2), ("finetune", 1)):
        for name in ("loss", "acc"):
            scalars = events.Scalars(f"child/{stage}_{name}")
            assert [e.step for e in scalars] == list(range(2 * epochs))
            expected = [v for h in history for v in h["child_curves"][stage][name]]
            assert [e.value for e in scalars] == pytest.approx(expected)
    assert all(0.0 <= v <= 1.0 for h in history for v in h["child_curves"]["train"]["acc"])


def test_child_curves_are_off_by_default(events: EventAccumulator, tiny_search_run: Path) -> None:
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("child/")]
    assert all("child_curves" not in h for h in read_history(tiny_search_run))


@pytest.mark.parametrize(
    ("flag", "line"),
    [
        ("--top_k.k=0", "nasprune: error: top_k.k: must be a positive integer, got 0"),
        ("--pareto.every_n_updates=0", "nasprune: error: pareto.every_n_updates: must be a positive integer, got 0"),
        ("--export.final_training={epochs: -1}", "nasprune: error: export.final_training.epochs: must be a non-negative integer, got -1"),
        ("--export.final_training={epochs_typo: 3}", "nasprune: error: export.final_training.epochs_typo: unknown training key"),
    ],
)
def test_bad_watch_and_export_settings_fail_before_training(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flag: str, line: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(repo / "configs" / "digits.yaml"), flag, f"--trainer.default_root_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(line)
    assert not (tmp_path / "lightning_logs").exists()
