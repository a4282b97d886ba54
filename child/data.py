"""Data for child networks. Digits (8×8, inside scikit-learn) is the embedded default: no download."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

from nasprune.config import ConfigError


class ChildDataModule(pl.LightningDataModule):
    """What an env needs to know of its data: the input shape and the number of classes."""

    input_shape: tuple[int, ...]
    num_classes: int


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


class DigitsDataModule(ChildDataModule):
    """scikit-learn's 1,797 handwritten digits with seeded, stratified train/validation/test splits.

    `val_fraction` and `test_fraction` are shares of the whole set. Rewards use the validation
    split; the test split is held out for the exported model. The training split is the same for
    any pair with the same sum (the held-out part is split off first, then halved by the ratio),
    so the defaults train children on exactly the examples a 0.2 validation split left them.
    Pixels (0..16) are standardised with the training split's mean and standard deviation.
    """

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, val_fraction: float = 0.1, split_seed: int = 0, batch_size: int = 64, test_fraction: float = 0.1) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError("val_fraction", f"must be in (0, 1), got {val_fraction!r}")
        if not 0.0 < test_fraction < 1.0 - val_fraction:
            raise ConfigError("test_fraction", f"must be in (0, 1 - val_fraction), got {test_fraction!r}")
        if batch_size < 1:
            raise ConfigError("batch_size", f"must be a positive integer, got {batch_size!r}")
        self.save_hyperparameters()
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = _digits()
        held_out = self.hparams.val_fraction + self.hparams.test_fraction
        x_train, x_held, y_train, y_held = train_test_split(
            images, labels, test_size=held_out, random_state=self.hparams.split_seed, stratify=labels
        )
        x_val, x_test, y_val, y_test = train_test_split(
            x_held,
            y_held,
            test_size=self.hparams.test_fraction / held_out,
            random_state=self.hparams.split_seed,
            stratify=y_held,
        )
        mean, std = x_train.mean(), x_train.std()
        self.train_set = self._tensors(x_train, y_train, mean, std)
        self.val_set = self._tensors(x_val, y_val, mean, std)
        self.test_set = self._tensors(x_test, y_test, mean, std)

    @staticmethod
    def _tensors(images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> TensorDataset:
        x = torch.from_numpy((images - mean) / std).unsqueeze(1)
        return TensorDataset(x, torch.from_numpy(labels))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=512)
