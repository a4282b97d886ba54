"""Text and figures to whichever loggers a run has: TensorBoard, W&B, or both.

Lightning's `Logger` base has `log_metrics` only; each logger spells text and images its own way,
so the callbacks that publish tables and figures call these two functions instead.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger


def figure_to_array(figure: Figure) -> np.ndarray:
    """The rendered figure as an RGB image, height × width × 3, uint8."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def log_text(logger: Logger, tag: str, markdown: str, rows: list[list[str]], columns: list[str], step: int) -> None:
    """A table: markdown in TensorBoard's text tab, a `wandb.Table` in W&B (other loggers skip it)."""
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_text(tag, markdown, global_step=step)
    elif isinstance(logger, WandbLogger):
        logger.log_text(key=tag, columns=columns, data=rows, step=step)


def log_figure(logger: Logger, tag: str, figure: Figure, step: int) -> None:
    """An image: TensorBoard's image tab, W&B's media panel (other loggers skip it)."""
    image = figure_to_array(figure)
    if isinstance(logger, TensorBoardLogger):
        logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
    elif isinstance(logger, WandbLogger):
        logger.log_image(key=tag, images=[image], step=step)
