"""`nasprune fit -c configs/digits.yaml`: LightningCLI over the controller and the episode data."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
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
