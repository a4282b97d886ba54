"""Data for child networks: LightningDataModules with a seeded train/validation split and a test split.

Digits (8×8, inside scikit-learn) is the embedded default: no download. MNIST, Fashion-MNIST and
CIFAR-10 come through torchvision, from a local `root` in torchvision's layout or downloaded with
`download: true`. Rewards see the validation split only; the test split (`setup("test")`,
`test_dataloader()`) is for the final report of the best design.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset
from torchvision import datasets

from nasprune.config import ConfigError, NonNegativeInt, OpenUnitInterval, PositiveInt


class ChildDataModule(pl.LightningDataModule):
    """What an env needs to know of its data: the input shape and the number of classes.

    Subclasses fill `train_set` and `val_set` in `setup("fit")` and `test_set` in `setup("test")`.
    """

    input_shape: tuple[int, int, int]  # channels, height, width
    num_classes: int

    def __init__(self, batch_size: PositiveInt = 64, eval_batch_size: PositiveInt = 512, num_workers: NonNegativeInt = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _loader(self, dataset: TensorDataset | None, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        if dataset is None:
            stage = "test" if split == "test" else "fit"
            raise RuntimeError(f"the {split} split is not loaded; call setup({stage!r}) first")
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "validation", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", self.eval_batch_size, shuffle=False)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


class DigitsDataModule(ChildDataModule):
    """scikit-learn's 1,797 handwritten digits: seeded, stratified train/validation/test splits.

    The validation split is drawn first (`val_fraction` of all), then the test split
    (`test_fraction` of all) from the rest. Pixels (0..16) are standardised with the training
    split's mean and standard deviation.
    """

    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(
        self,
        val_fraction: OpenUnitInterval = 0.2,
        split_seed: int = 0,
        batch_size: PositiveInt = 64,
        test_fraction: OpenUnitInterval = 0.2,
        eval_batch_size: PositiveInt = 512,
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        if val_fraction + test_fraction >= 0.9:
            raise ConfigError("test_fraction", f"val_fraction + test_fraction must leave ≥ 10% for training, got {test_fraction!r}")
        self.save_hyperparameters()
        self.val_fraction, self.split_seed, self.test_fraction = val_fraction, split_seed, test_fraction

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = _digits()
        x_rest, x_val, y_rest, y_val = train_test_split(
            images, labels, test_size=self.val_fraction, random_state=self.split_seed, stratify=labels
        )
        x_train, x_test, y_train, y_test = train_test_split(
            x_rest,
            y_rest,
            test_size=round(self.test_fraction * len(labels)),
            random_state=self.split_seed,
            stratify=y_rest,
        )
        mean, std = x_train.mean(), x_train.std()
        self.train_set = self._tensors(x_train, y_train, mean, std)
        self.val_set = self._tensors(x_val, y_val, mean, std)
        self.test_set = self._tensors(x_test, y_test, mean, std)

    @staticmethod
    def _tensors(images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> TensorDataset:
        x = torch.from_numpy((images - mean) / std).unsqueeze(1)
        return TensorDataset(x, torch.from_numpy(labels))


@lru_cache(maxsize=4)
def _load_torchvision(name: str, root: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A torchvision data set as (uint8 images N×C×H×W, int64 labels), cached per process.

    Raises `ValueError` when the split has not one label per image (torchvision reads the image
    and label files apart and never compares them: children would train on shifted labels)."""
    dataset = getattr(datasets, name)(root, train=train, download=False)
    images = torch.as_tensor(np.asarray(dataset.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return images.contiguous(), labels


class TorchvisionDataModule(ChildDataModule):
    """A torchvision classification data set held as tensors in memory.

    The images are converted once, normalised with the data set's usual per-channel mean and
    standard deviation, and served from `TensorDataset`s: per-example PIL transforms would cost
    more than the cheap child trainings themselves. No augmentation.

    The validation split is `val_fraction` of the official training set, drawn by a permutation
    seeded with `split_seed`; `train_subset` / `val_subset` keep only the first N of each split
    (for cheap searches and benchmarks). `setup("test")` loads the official test set.
    """

    dataset_name: ClassVar[str]
    folder: ClassVar[str]
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        val_fraction: OpenUnitInterval = 0.1,
        split_seed: int = 0,
        batch_size: PositiveInt = 64,
        train_subset: PositiveInt | None = None,
        val_subset: PositiveInt | None = None,
        eval_batch_size: PositiveInt = 512,
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters()
        self.root, self.download, self.val_fraction, self.split_seed = root, download, val_fraction, split_seed
        self.train_subset, self.val_subset = train_subset, val_subset

    def prepare_data(self) -> None:
        """Download when asked to; then read every split a run reads — the training set (training
        and validation) and the test set (the export's report) — so that a missing, truncated or
        mismatched file stops the run before any search (a ConfigError naming the split)."""
        root = Path(self.root).expanduser()
        if self.download:
            for train in (True, False):
                getattr(datasets, self.dataset_name)(str(root), train=train, download=True)
        for train, split in ((True, "training"), (False, "test")):
            try:
                _load_torchvision(self.dataset_name, str(root.resolve()), train)
            except (OSError, RuntimeError, ValueError) as err:
                if "not found" in str(err).lower():
                    raise ConfigError(
                        "root",
                        f"{self.dataset_name} not found under {self.root} (resolved: {root.resolve()}): "
                        f"expected torchvision's layout ({root / self.folder}/...); set download: true to fetch it ({err})",
                    ) from None
                raise ConfigError("root", f"{self.dataset_name} {split} split under {root.resolve() / self.folder} cannot be read: {err}") from None

    def _normalised(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def setup(self, stage: str | None = None) -> None:
        root = str(Path(self.root).expanduser().resolve())
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = _load_torchvision(self.dataset_name, root, True)
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
            n_val = round(self.val_fraction * len(labels))
            val_index, train_index = order[:n_val], order[n_val:]
            train_index = train_index[: self.train_subset]
            val_index = val_index[: self.val_subset]
            self.train_set = TensorDataset(self._normalised(images[train_index]), labels[train_index])
            self.val_set = TensorDataset(self._normalised(images[val_index]), labels[val_index])
        if stage in (None, "test") and self.test_set is None:
            images, labels = _load_torchvision(self.dataset_name, root, False)
            self.test_set = TensorDataset(self._normalised(images), labels)


class MNISTDataModule(TorchvisionDataModule):
    """MNIST (28×28 grey, 60k train / 10k test), `root/MNIST/raw/*-ubyte`."""

    dataset_name = "MNIST"
    folder = "MNIST/raw"
    input_shape = (1, 28, 28)
    num_classes = 10
    mean = (0.1307,)
    std = (0.3081,)


class FashionMNISTDataModule(TorchvisionDataModule):
    """Fashion-MNIST (28×28 grey, 60k train / 10k test), `root/FashionMNIST/raw/*-ubyte`."""

    dataset_name = "FashionMNIST"
    folder = "FashionMNIST/raw"
    input_shape = (1, 28, 28)
    num_classes = 10
    mean = (0.2860,)
    std = (0.3530,)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (32×32 RGB, 50k train / 10k test), `root/cifar-10-batches-py/` (checksums verified)."""

    dataset_name = "CIFAR10"
    folder = "cifar-10-batches-py"
    input_shape = (3, 32, 32)
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
