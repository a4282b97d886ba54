"""At the end of a NasPrune or PruneModel search, export its best network (see `nasprune.export`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from nasprune.child import ChildTraining
from nasprune.config import PositiveInt
from nasprune.controller.episode import Episode
from nasprune.envs.nasprune_env import NasPruneEnv
from nasprune.envs.prune_model_env import PruneModelEnv
from nasprune.export import DeploySettings, export_design, final_training as with_final_training
from nasprune.records import is_evaluated
from nasprune.run_history import history_of

log = logging.getLogger(__name__)


class ExportBest(pl.Callback):
    """Trains the best design with the final budget and writes it to `RUN_DIR/<directory>/`.

    `final_training` overrides keys of the env's child `training` (e.g. `{epochs: 20,
    finetune_epochs: 5}`): the search scores candidates cheaply, the shipped model gets the
    budget it deserves. Runs on envs other than NasPrune (CartPole, NAS-Bench-201) have no child
    network to ship and are left alone. `nasprune export RUN_DIR` does the same afterwards.
    `int8` also writes the static int8 model of the whole network and measures float and int8 in
    ONNX Runtime (`calibration_images`, `latency_batch_size`, `latency_threads`: see `DeploySettings`).

    The design exported is the run history's best evaluated episode (`RunHistory.best_evaluated`),
    so a resumed run weighs the episodes before the restart too. A resume that evaluates nothing
    new exports only when the run has no export yet — the one a kill interrupted (an export is
    written whole or not at all): `finished_interrupted` is then set.
    """

    def __init__(
        self,
        enabled: bool = True,
        final_training: dict[str, Any] | None = None,
        seed: int = 0,
        directory: str = "export",
        int8: bool = False,
        calibration_images: PositiveInt = 256,
        latency_batch_size: PositiveInt = 64,
        latency_threads: PositiveInt = 1,
    ) -> None:
        self.enabled = enabled
        self.final_training = dict(final_training or {})
        with_final_training(ChildTraining(), self.final_training)  # unknown keys and bad values fail before the search
        self.deploy = DeploySettings(int8, calibration_images, latency_batch_size, latency_threads)  # fails now if int8 cannot run
        self.seed = seed
        self.directory = directory
        self.evaluated_here = False  # whether this process played an episode that evaluated a network
        self.export_dir: Path | None = None
        self.metrics: dict[str, Any] | None = None
        self.finished_interrupted = False

    @rank_zero_only
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: list[Episode], batch_idx: int
    ) -> None:
        self.evaluated_here = self.evaluated_here or any(is_evaluated(episode.record) for episode in batch)

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        env = getattr(getattr(trainer.datamodule, "env", None), "unwrapped", None)  # type: ignore[attr-defined]  # Lightning sets Trainer.datamodule at runtime, undeclared
        if not self.enabled or not isinstance(env, (NasPruneEnv, PruneModelEnv)):
            return
        target = Path(trainer.log_dir or trainer.default_root_dir) / self.directory
        if not self.evaluated_here and target.exists():
            return  # nothing evaluated since the run's export
        best = history_of(trainer).best_evaluated
        if best is None:
            return
        self.finished_interrupted = not self.evaluated_here
        log.info("exporting episode %s (%s) to %s", best["episode"], best.get("design_str"), target)
        self.metrics = export_design(best, env, with_final_training(env.training, self.final_training), target, self.seed, self.deploy)
        self.export_dir = target
