"""Same seed and config ⇒ the same search: designs and rewards (tabular), designs (digits, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from nasprune.records import read_history
from nasprune.cli import run
from nasprune.controller import Episode, EpisodeDataModule, Reinforce
from test_nasbench201 import write_table


def tabular(repo: Path, table: Path, root: Path, *extra: str) -> list[dict]:
    run(["fit", "-c", str(repo / "configs" / "nasbench201.yaml"), f"--data.env_kwargs.table={table}", f"--trainer.default_root_dir={root}",
         "--trainer.max_steps=6", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra])  # fmt: skip
    (run_dir,) = (root / "lightning_logs").iterdir()
    return read_history(run_dir / "history.jsonl")


@pytest.mark.parametrize(
    "strategy", ["nasprune.controller.Reinforce", "nasprune.controller.RegularizedEvolution", "nasprune.controller.RandomSearch"]
)
def test_tabular_searches_repeat_exactly(repo: Path, tmp_path: Path, strategy: str) -> None:
    table = write_table(tmp_path / "nb201.csv")
    extra = [f"--model={strategy}", *(["--model.population_size=16", "--model.sample_size=4"] if "Evolution" in strategy else [])]
    first = tabular(repo, table, tmp_path / "a", *extra)
    again = tabular(repo, table, tmp_path / "b", *extra)
    assert len(first) == 6 * 16  # updates × the config's episodes per update
    assert [(h["actions"], h["arch"], h["reward"]) for h in again] == [(h["actions"], h["arch"], h["reward"]) for h in first]
    other = tabular(repo, table, tmp_path / "c", "--seed_everything=1", *extra)
    assert [h["actions"] for h in other] != [h["actions"] for h in first]


def test_digits_searches_repeat_their_designs_on_cpu(tiny_env_kwargs: dict) -> None:
    def designs(seed: int) -> list[str]:
        pl.seed_everything(seed)
        data = EpisodeDataModule("nasprune/NasPrune-v0", {**tiny_env_kwargs, "cache": False}, episodes_per_update=2)
        model = Reinforce(data.observation_space, data.action_space, lr=0.05)
        played = []

        class Designs(pl.Callback):
            def on_episode_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, episode: Episode) -> None:
                played.append(episode.info["design_str"])

        trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             accelerator="cpu", callbacks=[Designs()])  # fmt: skip
        trainer.fit(model, datamodule=data)
        return played

    first = designs(5)
    assert len(first) == 4 and designs(5) == first
    assert designs(6) != first
