"""`nasprune fit -c configs/digits.yaml`: LightningCLI over the controller and the episode data."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import re
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from jsonargparse import DefaultHelpFormatter, Namespace
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.plugins import CheckpointIO
from rich.console import Console

from nasprune.callbacks import ChildCurves, EpisodeMetrics, ExportBest, HistoryWriter, HparamsMetric, ParetoPlot, SearchProgressBar, TopKTable
from nasprune.config import ConfigError, SearchError, import_object, resolve_config_path
from nasprune.controller import EpisodeDataModule, SearchStrategy
from nasprune.env_settings import DEFAULT_ENV_ID, add_env_arguments, as_env_kwargs, env_id_in
from nasprune.files import AtomicCheckpointIO, atomic_write
from nasprune.lock import RunLock
from nasprune.records import HistoryError, read_lines


DESCRIPTION = """Joint architecture + per-layer pruning search.
  nasprune fit -c configs/digits.yaml   search (`nasprune fit --help`: every key)
  nasprune export RUN_DIR               train the run's best design with the final budget and save it
  nasprune report RUN_DIR               write report.png and report.md for a run"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines kept as written."""


@dataclasses.dataclass
class RunState:
    """What `main` reports about a search and gives back when it ends, however it ends."""

    trainer: pl.Trainer | None = None
    lock: RunLock | None = None
    signals: list[int] = dataclasses.field(default_factory=list)  # SIGINT, SIGTERM received
    restored_step: int | None = None  # the resumed checkpoint's update count
    budget_spent: bool = False  # a resume that found nothing left to play


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

    def __init__(
        self, *args: Any, command: Sequence[str] = (), env_id: str = DEFAULT_ENV_ID, state: RunState | None = None, **kwargs: Any
    ) -> None:
        self.command = list(command)
        self.env_id = env_id
        self.state = state or RunState()
        self.resumed: Path | None = None  # the checkpoint a resume continues (set by `parse_arguments`)
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """`fit` only: a search has no validation, test or predict loop (Lightning's would fail);
        `nasprune export` and `nasprune report` work on a finished run."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Lightning's groups, with `data.env_kwargs` typed by the signature of `data.env_id`'s class."""
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=self.subclass_mode_model)
        parser.add_class_arguments(EpisodeDataModule, "data", fail_untyped=False, sub_configs=True, skip={"env_kwargs"})
        add_env_arguments(parser, self.env_id)

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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Then check what the config cannot type, before Lightning or anything else reads it: the
        budget, and the checkpoint a resume names (`resumed`: its path, when it is ours to find)."""
        super().parse_arguments(parser, args)
        config = self.config.get(self.config.get("subcommand") or "fit") or self.config
        trainer_config = config.get("trainer") or {}
        max_steps = trainer_config.get("max_steps")
        if max_steps is not None and max_steps < -1:
            raise ConfigError("trainer.max_steps", f"must be the number of controller updates, or -1 for no limit; got {max_steps!r}")
        ckpt_path = config.get("ckpt_path")
        if ckpt_path and str(ckpt_path) not in LIGHTNING_CKPT_PATHS:
            self.resumed = resumed_checkpoint(str(ckpt_path), Path(trainer_config.get("default_root_dir") or os.getcwd()))
            self.state.restored_step = int(read_checkpoint(self.resumed).get("global_step", 0))

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Three departures from Lightning's defaults.

        A resumed run writes into the directory of the run it resumes, not a new `version_N`: its
        history, checkpoints and TensorBoard curves continue in one place. Checkpoints are written
        atomically beside their destination (`AtomicCheckpointIO`), unless the user chose a
        checkpoint plugin. And Lightning's bar counts batches (updates); a search shows episodes,
        unless bars are off or the user chose one.
        """
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer_config = config.get("trainer", {})
        if self.resumed is not None and trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            run_dir = self.resumed.parent.parent if self.resumed.parent.name == "checkpoints" else None
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

    def instantiate_classes(self) -> None:
        """A strategy's or a data module's own `ConfigError` reaches the user as it is, not inside
        jsonargparse's report of every type it tried."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            if (cause := config_error_cause(err)) is None:
                raise
            raise cause from None

    def before_fit(self) -> None:
        """Hold the run directory (`RunLock`: one search per directory), before anything is written
        there; then `command.txt`: how to make this run again (`nasprune report` quotes it) — the
        first command, and on each resume its command appended."""
        self.state.trainer = self.trainer
        if not self.trainer.is_global_zero:
            return
        run_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        self.state.lock = RunLock.acquire(run_dir)
        if self.command:
            command_file = run_dir / "command.txt"
            earlier = command_file.read_text(encoding="utf-8") if self.state.restored_step is not None and command_file.is_file() else ""
            atomic_write(command_file, earlier + shlex.join(["nasprune", *self.command]) + "\n")

    def after_fit(self) -> None:
        """Close W&B runs here, not at interpreter exit: the next search in this process gets its own run.
        A resume that found its budget spent is noted (`main` says so)."""
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
        restored = self.state.restored_step
        self.state.budget_spent = restored is not None and self.trainer.global_step == restored and 0 <= (self.trainer.max_steps or 0) <= restored


class NasPruneParser(LightningArgumentParser):
    """Instantiates everything but the env settings (the env copies and workers build their own),
    and reports a bad value as one `ConfigError` line naming its full key."""

    def instantiate(self, namespace: Namespace, *args: Any, **kwargs: Any) -> Namespace:
        """A `ConfigError` raised by a class being built reaches the caller as itself, not inside
        jsonargparse's report of the union members it tried."""
        try:
            return super().instantiate(as_env_kwargs(namespace), *args, **kwargs)
        except ValueError as err:
            if (cause := config_error_cause(err)) is None:
                raise
            raise cause from None

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parser: its caller collects the message
            super().error(message, ex)
        raise config_error(message)


def config_error_cause(err: ValueError) -> ConfigError | None:
    """The `ConfigError` behind `err` (raised by a class being built, then wrapped by jsonargparse)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ConfigError):
        cause = cause.__cause__ or cause.__context__
    return cause if isinstance(cause, ConfigError) else None


def config_error(message: str) -> ConfigError:
    """jsonargparse's report (an indented tree: a key, the union members tried, the nested keys)
    as one line: the full key of the innermost value rejected and why.

    A member of `T | None` that is not `None` is followed down; `None`'s own rejection is noise.
    A subclass's nested keys are its `init_args`; a dataclass's are its fields.
    """
    lines = [line.strip() for line in message.splitlines()]
    lines = lines[: next((i for i, line in enumerate(lines) if "<class 'NoneType'>" in line and line.startswith("-")), len(lines))]
    keys: list[str] = []
    for line in lines:
        if found := re.match(r'(?:error: )?Parser key "([^"]+)":?\s*(.*)', line):
            keys.append(found.group(1))
        elif found := re.match(r"- Problem with given class_path '([^']+)'", line):
            keys.append("" if _is_dataclass_path(found.group(1)) else "init_args")
    structure = ("Parser key", "Problem with", "Does not validate", "Subtypes:", "Errors:", "Given value", "- Expected a <class 'NoneType'>")
    details = [line.lstrip("- ") for line in lines if line and not line.startswith(structure)]
    key = ".".join(k for k in keys if k) or "config"
    detail = details[-1] if details else lines[0] if lines else message
    detail = re.sub(r"^Expected a <class '(\w+)'>\. Got value: (.*)$", lambda m: f"must be {PLAIN_TYPES.get(m[1], 'a ' + m[1])}, got {m[2]!r}", detail)
    return ConfigError(key, re.sub(r"^error: ", "", detail))


# how a one-line error names a plain type jsonargparse reports as `<class 'T'>`
PLAIN_TYPES = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string", "tuple": "a list", "list": "a list", "dict": "a mapping"}


def _is_dataclass_path(path: str) -> bool:
    try:
        return dataclasses.is_dataclass(import_object(path, "class_path"))
    except ConfigError:
        return False


# values of `--ckpt_path` that Lightning resolves itself
LIGHTNING_CKPT_PATHS = ("best", "hpc", "registry")


def resumed_checkpoint(ckpt_path: str, root: Path) -> Path:
    """The checkpoint a `--ckpt_path` resumes: for `last`, `checkpoints/last.ckpt` of the newest
    `lightning_logs/version_N` under `root` that has one. A resume never starts a new run: with
    no checkpoint to resume it is a `ConfigError` saying what is there and what to do."""
    if ckpt_path != "last":
        return Path(ckpt_path)
    runs = sorted((int(m.group(1)), d) for d in (root / "lightning_logs").glob("version_*") if (m := re.fullmatch(r"version_(\d+)", d.name)))
    with_checkpoint = [d for _, d in runs if (d / "checkpoints" / "last.ckpt").exists()]
    if with_checkpoint:
        return with_checkpoint[-1] / "checkpoints" / "last.ckpt"
    with_history = [d for _, d in runs if (d / "history.jsonl").is_file()]
    if with_history:
        run_dir = with_history[-1]
        episodes = len(read_lines(run_dir / "history.jsonl")[0])
        raise ConfigError(
            "ckpt_path",
            f"{run_dir} holds {episodes} episodes but no checkpoint yet (one is written every checkpoint.every_n_train_steps "
            "updates), so there is nothing to resume from; run the search again without --ckpt_path (a new run: episode i is "
            "seeded by i, so it plays the same episodes again)",
        )
    raise ConfigError("ckpt_path", f"nothing to resume under {root / 'lightning_logs'} (no version_N with checkpoints/last.ckpt); start the search without --ckpt_path")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, or a `ConfigError` naming the file, what is wrong and what to do."""
    instead = "give --ckpt_path another checkpoint of the run, or start a new run without --ckpt_path"
    if not path.exists():
        raise ConfigError("ckpt_path", f"{path} does not exist; {instead}")
    if not path.is_file():
        raise ConfigError("ckpt_path", f"{path} is not a file; {instead}")
    if path.stat().st_size == 0:
        raise ConfigError("ckpt_path", f"{path} is empty (cut short while it was written?); {instead}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, … for a damaged file
        raise ConfigError("ckpt_path", f"{path} cannot be read, it is damaged ({type(err).__name__}: {' '.join(str(err).split())[:200]}); {instead}") from None


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
    """Let `-c configs/NAME.yaml` find the packaged config when run outside a checkout; a config
    file that is not readable YAML is a `ConfigError` naming it (jsonargparse's says neither)."""
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg in ("-c", "--config"):
            out[i + 1] = _readable_config(resolve_config_path(out[i + 1]))
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + _readable_config(resolve_config_path(arg.split("=", 1)[1]))
    return out


def _readable_config(path: str) -> str:
    if Path(path).is_file():
        try:
            yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError("config", f"{path} is not a readable YAML file ({type(err).__name__}: {' '.join(str(err).split())})") from None
    return path


def run(args: Sequence[str] | None = None, state: RunState | None = None) -> NasPruneCLI:
    """Run the CLI on `args` (default: `sys.argv[1:]`) and return it; raises `ConfigError`.
    `state` (the CLI's `state`) tells what happened also when the search raised. The run
    directory's lock is given back however the search ends."""
    _silence_known_noise()
    args = list(sys.argv[1:] if args is None else args)
    state = state or RunState()
    try:
        return _run(args, state)
    finally:
        if state.lock is not None:
            state.lock.release()


def _run(args: list[str], state: RunState) -> NasPruneCLI:
    resolved = _resolve_configs(args)
    return NasPruneCLI(
        SearchStrategy,
        EpisodeDataModule,
        subclass_mode_model=True,
        command=args,
        state=state,
        save_config_callback=RunConfig,
        env_id=env_id_in(resolved),
        parser_class=NasPruneParser,
        # Lightning's instantiators hand the `data` group's hparams to every `save_hyperparameters`
        # called while EpisodeDataModule is built, so the env's child data module would save them
        # instead of its own; each module saves what its own __init__ received
        load_from_checkpoint_support=False,
        args=resolved,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "nasprune", "description": DESCRIPTION, "formatter_class": HelpFormatter},
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
    export.add_argument(
        "--int8", action=argparse.BooleanOptionalAction, default=None, help="also write model.int8.onnx (override export.int8)"
    )
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
    target = export_run(options.run_dir, options.out, overrides, options.seed, options.int8)
    console.print(f"export: {target}", markup=False, highlight=False)


def run_summary(best_path: Path, export_dir: Path | None, history_path: Path | None = None) -> list[str]:
    """What the search found and where to look further, from the run's files (`best.json`, the
    export's `metrics.json`): the lines `nasprune fit` ends with. An env without child networks
    (NAS-Bench-201, CartPole) gets what applies: its best reward and design."""
    run_dir = best_path.parent
    if not best_path.is_file():
        return [f"no episode finished; run: {run_dir}"]
    best = json.loads(best_path.read_text(encoding="utf-8"))
    found = best.get("design_str") or best.get("arch")
    if found:
        lines = [f"best:     {found}  (episode {best.get('episode')}, reward {best['reward']:.4f})"]
    else:
        lines = [f"best:     reward {best['reward']:.4f}  (episode {best.get('episode')}, {best.get('length')} steps)"]
    measured = [f"{label} {_number(best[key], unit)}" for key, label, unit in _MEASURES if isinstance(best.get(key), (int, float))]
    if measured:
        lines.append("          " + ", ".join(measured))
    metrics_path = export_dir / "metrics.json" if export_dir is not None else None
    if metrics_path is not None and metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        lines.append(f"exported: {export_dir}  (test accuracy {metrics['test_accuracy']:.2%}; {', '.join(metrics['files'])})")
    if history_path is not None:
        lines.append(f"history:  {history_path}")
    lines += [
        "look further:",
        f"  tensorboard --logdir {run_dir.parent}",
        f"  nasprune report {run_dir}",
    ]
    if "design" in best:
        lines.append(f"  nasprune export {run_dir}")
    return lines


# (record key, label, format) of the best episode's measures, as `run_summary` prints them
_MEASURES = (("accuracy", "val accuracy", "%"), ("valid_acc_12ep", "val accuracy (12 epochs)", "%"), ("test_acc_200ep", "test accuracy (200 epochs)", "%"), ("flops", "FLOPs", ","), ("params", "params", ","))


def _number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.2%}" if value <= 1 else f"{value:.2f}%"
    return f"{value:,.0f}"


# the exit status of a process stopped by a signal, as shells report it
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@contextmanager
def recording_signals(received: list[int]) -> Iterator[None]:
    """Note SIGINT and SIGTERM in `received` while they do what they would: Ctrl-C still raises
    `KeyboardInterrupt`, SIGTERM still reaches Lightning's handler (it stops the search at the
    end of the update). Lightning turns both into a plain exit; `main` then says what stopped it."""

    def on_sigint(signum: int, frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    def on_sigterm(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, handler) for signum, handler in ((signal.SIGINT, on_sigint), (signal.SIGTERM, on_sigterm))}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stopped_line(state: RunState) -> str:
    """`nasprune: stopped by SIGTERM at episode k of n; resume with --ckpt_path last`."""
    name = signal.Signals(state.signals[0]).name
    trainer = state.trainer
    if trainer is None or trainer.datamodule is None:  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
        return f"nasprune: stopped by {name} before the search began"
    played = getattr(trainer.datamodule, "episodes_played", 0)  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
    per_update = getattr(trainer.datamodule, "hparams", {}).get("episodes_per_update")  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
    budget = f" of {trainer.max_steps * per_update}" if per_update and trainer.max_steps and trainer.max_steps > 0 else ""
    if not getattr(trainer.checkpoint_callback, "last_model_path", ""):
        return f"nasprune: stopped by {name} at episode {played}{budget}, before the run's first checkpoint: nothing to resume, run it again to start over"
    return f"nasprune: stopped by {name} at episode {played}{budget}; resume with --ckpt_path last"


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(message, markup=False, highlight=False)
    raise SystemExit(code) from None


def main(args: Sequence[str] | None = None) -> None:
    """The `nasprune` command. Exit status: 0 done; 1 the search failed (one line says why);
    2 bad input (one line names the key or file); 130 / 143 stopped by SIGINT / SIGTERM."""
    args = list(sys.argv[1:] if args is None else args)
    console = Console(soft_wrap=True)
    state = RunState()
    with recording_signals(state.signals):
        try:
            if args and args[0] in ("export", "report"):
                _silence_known_noise()
                _after_run(args, console)
                return
            cli = run(args, state)
        except (ConfigError, HistoryError) as err:
            _fail(f"nasprune: error: {err}", 2)
        except SearchError as err:
            _fail(f"nasprune: error: {err}", 1)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            _fail(
                f"nasprune: error: no space left on device ({err.filename or 'writing the run'}); every episode written "
                "before is kept (history.jsonl, fsynced; a torn last line is skipped): free space, then resume with --ckpt_path last",
                1,
            )
        except (KeyboardInterrupt, SystemExit):
            if not state.signals:
                raise
            _fail(stopped_line(state), SIGNAL_EXIT[signal.Signals(state.signals[0])])
    if state.signals:  # the search ended anyway (the signal came at its very end)
        _fail(stopped_line(state), SIGNAL_EXIT[signal.Signals(state.signals[0])])
    if state.budget_spent:
        console.print(f"nothing to resume: the run's budget (trainer.max_steps {cli.trainer.max_steps}) is spent: {cli.trainer.log_dir}", markup=False, highlight=False)
    history = next((cb for cb in cli.trainer.callbacks if isinstance(cb, HistoryWriter)), None)  # type: ignore[attr-defined]  # Lightning sets Trainer.callbacks at runtime, undeclared
    export = next((cb for cb in cli.trainer.callbacks if isinstance(cb, ExportBest)), None)  # type: ignore[attr-defined]  # Lightning sets Trainer.callbacks at runtime, undeclared
    if export is not None and export.finished_interrupted:
        console.print(f"export: finishing the export the stopped run had begun: {export.export_dir}", markup=False, highlight=False)
    if history is not None and history.best_path is not None:
        export_dir = export.export_dir if export is not None else None
        console.print("\n".join(run_summary(history.best_path, export_dir, history.history_path)), markup=False, highlight=False)


if __name__ == "__main__":
    main()
