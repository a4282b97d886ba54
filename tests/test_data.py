"""Child data modules: seeded splits, subsets, the test split, torchvision layouts, clear errors.

MNIST is read from the shared copy of the real files; Fashion-MNIST and CIFAR-10 from tiny fakes
written here in torchvision's on-disk layout (nothing is downloaded).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torchvision import datasets

import nasprune.envs  # noqa: F401  (registers nasprune/NasPrune-v0)
from nasprune.child import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from nasprune.config import ConfigError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_mnist = pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="no shared MNIST copy")


@needs_mnist
def test_mnist_split_is_seeded_with_subsets_and_a_separate_test_split() -> None:
    a = MNISTDataModule(root=str(SHARED), val_fraction=0.1, split_seed=1, train_subset=500, val_subset=200)
    b = MNISTDataModule(root=str(SHARED), val_fraction=0.1, split_seed=1, train_subset=500, val_subset=200)
    c = MNISTDataModule(root=str(SHARED), val_fraction=0.1, split_seed=2, train_subset=500, val_subset=200)
    for dm in (a, b, c):
        dm.prepare_data()
        dm.setup("fit")
    assert (len(a.train_set), len(a.val_set)) == (500, 200)
    assert torch.equal(a.train_set.tensors[1], b.train_set.tensors[1])
    assert not torch.equal(a.train_set.tensors[1], c.train_set.tensors[1])
    assert a.train_set.tensors[0].shape[1:] == MNISTDataModule.input_shape
    assert a.test_set is None  # the test split is loaded only for the final report
    with pytest.raises(RuntimeError, match=r"call setup\('test'\)"):
        a.test_dataloader()
    a.setup("test")
    assert len(a.test_set) == 10_000
    x, y = next(iter(a.test_dataloader()))
    assert x.shape == (512, 1, 28, 28) and x.mean().abs() < 0.2 and 0.8 < x.std() < 1.2  # normalised
    full = MNISTDataModule(root=str(SHARED), val_fraction=0.1)
    full.setup("fit")
    assert (len(full.train_set), len(full.val_set)) == (54_000, 6_000)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of (Fashion-)MNIST: zero, zero, dtype code 0x08 (uint8), rank, big-endian sizes, data."""
    path.write_bytes(struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape) + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_torchvisions_layout(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_labels, test_labels = np.arange(40) % 10, np.arange(12) % 10
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (12, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)
    dm = FashionMNISTDataModule(root=str(tmp_path), val_fraction=0.25, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 12)
    labels = torch.cat([dm.train_set.tensors[1], dm.val_set.tensors[1]])
    assert sorted(labels.tolist()) == sorted(train_labels.tolist())  # a split of the training set, nothing lost
    assert torch.equal(dm.test_set.tensors[1], torch.as_tensor(test_labels))
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32


def test_cifar10_from_torchvisions_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision verifies the real files' MD5 sums; fakes cannot pass that, so only that check is bypassed
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.2, train_subset=10)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (10, 4, 4)
    assert dm.train_set.tensors[0].shape[1:] == (3, 32, 32) == CIFAR10DataModule.input_shape
    first = pickle.loads((folder / "test_batch").read_bytes())["data"][0]
    expected = (torch.tensor(first, dtype=torch.float32).view(3, 32, 32) / 255 - torch.tensor(dm.mean).view(3, 1, 1)) / torch.tensor(dm.std).view(3, 1, 1)
    assert torch.allclose(dm.test_set.tensors[0][0], expected)  # channels first, per-channel normalisation


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule])
def test_a_missing_data_set_is_one_clear_error(cls: type, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        cls(root=str(tmp_path / "nowhere")).prepare_data()
    assert err.value.key == "root"
    assert cls.dataset_name in str(err.value) and "download: true" in str(err.value) and "\n" not in str(err.value)


def test_the_env_refuses_a_missing_data_set_before_any_search(tmp_path: Path) -> None:
    kwargs = {"datamodule": {"class_path": "nasprune.child.MNISTDataModule", "init_args": {"root": str(tmp_path)}}}
    with pytest.raises(ConfigError) as err:
        gym.make("nasprune/NasPrune-v0", **kwargs)
    assert err.value.key == "datamodule.init_args.root"


