"""`nasprune fit -c configs/digits.yaml`: LightningCLI over the controller and the episode data."""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.plugins import CheckpointIO
from rich.console import Console

from nasprune.callbacks import ChildCurves, EpisodeMetrics, ExportBest, HistoryError, HistoryWriter, HparamsMetric, ParetoPlot, SearchProgressBar, TopKTable
from nasprune.config import ConfigError, SearchError, resolve_config_path
from nasprune.controller import EpisodeDataModule, SearchStrategy
from nasprune.files import AtomicCheckpointIO, atomic_write


class RunConfig(SaveConfigCallback):
    """`config.yaml` in the run directory, written atomically: `nasprune export` and `report` rebuild the run from it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "save_to_log_dir": False})

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        atomic_write(Path(trainer.log_dir or trainer.default_root_dir) / self.config_filename, self.parser.dump(self.config, skip_none=False))


class NasPruneCLI(LightningCLI):
    """Adds what every search needs: the env's spaces handed to the strategy, history, curves,
    the top-k table, the Pareto plot, the hparams metric, the export of the best design, and a
    progress bar counting episodes.

    `model` is any `SearchStrategy` chosen by `class_path` (the REINFORCE controller by default).
    """

    def __init__(self, *args: Any, command: Sequence[str] = (), **kwargs: Any) -> None:
        self.command = list(command)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.observation_space", "model.init_args.observation_space", apply_on="instantiate")
        parser.link_arguments("data.action_space", "model.init_args.action_space", apply_on="instantiate")
        parser.set_defaults({"model": {"class_path": "nasprune.controller.Reinforce"}})
        parser.add_lightning_class_args(HistoryWriter, "history")
        parser.add_lightning_class_args(EpisodeMetrics, "episode_metrics")
        parser.add_lightning_class_args(TopKTable, "top_k")
        parser.add_lightning_class_args(ParetoPlot, "pareto")
        parser.add_lightning_class_args(HparamsMetric, "hparams_metric")
        parser.add_lightning_class_args(ChildCurves, "child_curves")
        parser.add_lightning_class_args(ExportBest, "export")
        # last.ckpt after every update: `--ckpt_path last` resumes a killed search where it stopped
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.every_n_train_steps": 1, "checkpoint.save_last": True, "checkpoint.save_top_k": 0, "checkpoint.enable_version_counter": False}
        )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Three departures from Lightning's defaults.

        A resumed run writes into the directory of the run it resumes, not a new `version_N`: its
        history, checkpoints and TensorBoard curves continue in one place. Checkpoints are written
        atomically beside their destination (`AtomicCheckpointIO`), unless the user chose a
        checkpoint plugin. And Lightning's bar counts batches (updates); a search shows episodes,
        unless bars are off or the user chose one.
        """
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        ckpt_path, trainer_config = config.get("ckpt_path"), config.get("trainer", {})
        if ckpt_path and trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            run_dir = resumed_run_dir(str(ckpt_path), Path(trainer_config.get("default_root_dir") or os.getcwd()))
            if run_dir is not None:
                kwargs["logger"] = TensorBoardLogger(save_dir=run_dir.parent.parent, name=run_dir.parent.name, version=run_dir.name)
        plugins = trainer_config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs.setdefault("plugins", [*plugins, AtomicCheckpointIO()])
        callbacks = trainer_config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if trainer_config.get("enable_progress_bar") is not False and not any(isinstance(cb, ProgressBar) for cb in callbacks):
            kwargs.setdefault("callbacks", [*callbacks, SearchProgressBar()])
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        """`command.txt` in the run directory: how to make this run again (`nasprune report` quotes it)."""
        if self.command and self.trainer.is_global_zero:
            run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
            atomic_write(run_dir / "command.txt", shlex.join(["nasprune", *self.command]) + "\n")

    def after_fit(self) -> None:
        """Close W&B runs here, not at interpreter exit: the next search in this process gets its own run."""
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()


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
    args = list(sys.argv[1:] if args is None else args)
    return NasPruneCLI(
        SearchStrategy,
        EpisodeDataModule,
        subclass_mode_model=True,
        command=args,
        args=_resolve_configs(args),
        save_config_callback=RunConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "nasprune"},
    )


def _after_run_parser() -> argparse.ArgumentParser:
    """`nasprune export RUN_DIR` and `nasprune report RUN_DIR`: work on a run LightningCLI made."""
    parser = argparse.ArgumentParser(prog="nasprune")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="train the run's best design with the final budget and save it")
    export.add_argument("run_dir", type=Path, help="the run's log directory, e.g. runs/digits/lightning_logs/version_0")
    export.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/export)")
    export.add_argument("--epochs", type=int, default=None, help="override export.final_training.epochs")
    export.add_argument("--finetune-epochs", type=int, default=None, help="override export.final_training.finetune_epochs")
    export.add_argument("--seed", type=int, default=None, help="override export.seed")
    report = commands.add_parser("report", help="write report.png and report.md for a run")
    report.add_argument("run_dir", type=Path, help="the run's log directory, e.g. runs/digits/lightning_logs/version_0")
    report.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR)")
    report.add_argument("--top-k", type=int, default=10, help="rows of the top-k table")
    return parser


def _after_run(args: Sequence[str], console: Console) -> None:
    from nasprune.export import export_run, read_run_config
    from nasprune.report import write_report

    options = _after_run_parser().parse_args(args)
    if options.command == "report":
        png, md = write_report(options.run_dir, options.out, options.top_k)
        console.print(f"report: {md}\nfigure: {png}", markup=False, highlight=False)
        return
    overrides = dict((read_run_config(options.run_dir).get("export") or {}).get("final_training") or {})
    overrides.update({k: v for k, v in (("epochs", options.epochs), ("finetune_epochs", options.finetune_epochs)) if v is not None})
    target = export_run(options.run_dir, options.out, overrides, options.seed)
    console.print(f"export: {target}", markup=False, highlight=False)


def main(args: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if args is None else args)
    console = Console(soft_wrap=True)
    try:
        if args and args[0] in ("export", "report"):
            _silence_known_noise()
            _after_run(args, console)
            return
        cli = run(args)
    except (ConfigError, HistoryError) as err:
        Console(stderr=True, soft_wrap=True).print(f"nasprune: error: {err}", markup=False, highlight=False)
        raise SystemExit(2) from None
    except SearchError as err:
        Console(stderr=True, soft_wrap=True).print(f"nasprune: error: {err}", markup=False, highlight=False)
        raise SystemExit(1) from None
    history = next((cb for cb in cli.trainer.callbacks if isinstance(cb, HistoryWriter)), None)
    if history is not None and history.history_path is not None:
        console.print(f"history: {history.history_path}", markup=False, highlight=False)
        console.print(f"best:    {history.best_path}", markup=False, highlight=False)
    export = next((cb for cb in cli.trainer.callbacks if isinstance(cb, ExportBest)), None)
    if export is not None and export.export_dir is not None:
        console.print(f"export:  {export.export_dir}", markup=False, highlight=False)


if __name__ == "__main__":
    main()
