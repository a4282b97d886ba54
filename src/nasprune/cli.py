"""`nasprune fit -c configs/digits.yaml`: LightningCLI over the controller and the episode data."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import TensorBoardLogger
from rich.console import Console

from nasprune.callbacks import EpisodeMetrics, HistoryWriter
from nasprune.config import ConfigError, resolve_config_path
from nasprune.controller import EpisodeDataModule, SearchStrategy


class NasPruneCLI(LightningCLI):
    """Adds what every search needs: the env's spaces handed to the strategy, history and curves.

    `model` is any `SearchStrategy` chosen by `class_path` (the REINFORCE controller by default).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.observation_space", "model.init_args.observation_space", apply_on="instantiate")
        parser.link_arguments("data.action_space", "model.init_args.action_space", apply_on="instantiate")
        parser.set_defaults({"model": {"class_path": "nasprune.controller.Reinforce"}})
        parser.add_lightning_class_args(HistoryWriter, "history")
        parser.add_lightning_class_args(EpisodeMetrics, "episode_metrics")
        # last.ckpt after every update: `--ckpt_path last` resumes a killed search where it stopped
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.every_n_train_steps": 1, "checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.enable_version_counter": False}
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """A resumed run writes into the directory of the run it resumes, not a new `version_N`:
        its history, checkpoints and TensorBoard curves continue in one place."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        ckpt_path, trainer_config = config.get("ckpt_path"), config.get("trainer", {})
        if ckpt_path and trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            run_dir = resumed_run_dir(str(ckpt_path), Path(trainer_config.get("default_root_dir") or os.getcwd()))
            if run_dir is not None:
                kwargs["logger"] = TensorBoardLogger(save_dir=run_dir.parent.parent, name=run_dir.parent.name, version=run_dir.name)
        return super().instantiate_trainer(**kwargs)


def resumed_run_dir(ckpt_path: str, root: Path) -> Path | None:
    """The run directory a `--ckpt_path` continues: for `last`, the newest `lightning_logs/version_N`
    under `root` that has `checkpoints/last.ckpt` (None: nothing to resume, a new run starts);
    for a path `…/RUN/checkpoints/NAME.ckpt`, RUN."""
    if ckpt_path == "last":
        runs = [d for d in (root / "lightning_logs").glob("version_*") if (d / "checkpoints" / "last.ckpt").is_file()]
        numbered = [(int(m.group(1)), d) for d in runs if (m := re.fullmatch(r"version_(\d+)", d.name))]
        return max(numbered)[1] if numbered else None
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def _silence_known_noise() -> None:
    """Lightning's tips about dataloader workers and torch's deprecation notes say nothing about a search."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    # the controller takes `dataloader_iter` on purpose (no prefetch of stale episodes)
    warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
    # gradient-free strategies (random search, evolution) have no optimizer and no loss on purpose
    warnings.filterwarnings("ignore", message=".*configure_optimizers.* returned `None`.*")
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")
    # `run(args)` resolves packaged config paths, so it always passes `args` explicitly
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    # Lightning's own use of jsonargparse APIs that jsonargparse has deprecated
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)


def _resolve_configs(args: Sequence[str]) -> list[str]:
    """Let `-c configs/NAME.yaml` find the packaged config when run outside a checkout."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("-c", "--config"):
            out[i + 1] = resolve_config_path(out[i + 1])
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve_config_path(arg.split("=", 1)[1])
    return out


def run(args: Sequence[str] | None = None) -> NasPruneCLI:
    """Run the CLI on `args` (default: `sys.argv[1:]`) and return it; raises `ConfigError`."""
    _silence_known_noise()
    return NasPruneCLI(
        SearchStrategy,
        EpisodeDataModule,
        subclass_mode_model=True,
        args=_resolve_configs(sys.argv[1:] if args is None else args),
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "nasprune"},
    )


def main(args: Sequence[str] | None = None) -> None:
    try:
        cli = run(args)
    except ConfigError as err:
        Console(stderr=True, soft_wrap=True).print(f"nasprune: error: {err}", markup=False, highlight=False)
        raise SystemExit(2) from None
    history = next((cb for cb in cli.trainer.callbacks if isinstance(cb, HistoryWriter)), None)
    if history is not None and history.history_path is not None:
        console = Console(soft_wrap=True)
        console.print(f"history: {history.history_path}", markup=False, highlight=False)
        console.print(f"best:    {history.best_path}", markup=False, highlight=False)


if __name__ == "__main__":
    main()
