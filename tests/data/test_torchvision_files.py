"""Datasets read from small fake files written in torchvision's on-disk formats (IDX, CIFAR pickles)."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from byzdask.data import load_dataset, load_torchvision


def _idx(path, array, compress=False):
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as file:
            file.write(payload)
    else:
        path.write_bytes(payload)


def _mnist_like(root, folder, prefix="", compress=False, classes=10):
    where = root / folder
    where.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k" if not prefix else "test", 5)):
        _idx(where / f"{prefix}{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        _idx(where / f"{prefix}{split}-labels-idx1-ubyte", np.arange(n) % classes, compress)


def test_mnist_fashion_and_emnist_from_idx_files(tmp_path):
    _mnist_like(tmp_path, "MNIST/raw")
    _mnist_like(tmp_path, "FashionMNIST/raw", compress=True)
    _mnist_like(tmp_path, "EMNIST/raw", prefix="emnist-balanced-", classes=47)
    m = load_torchvision("mnist", tmp_path)
    assert m.train.x.shape == (12, 1, 28, 28) and m.test.y.tolist() == [0, 1, 2, 3, 4]
    assert m.train.x.dtype == torch.float32 and abs(float(m.train.x.mean()) - (0.498 - 0.1307) / 0.3081) < 0.2
    f = load_torchvision("FashionMNIST", tmp_path)
    assert f.train.num_classes == 10 and len(f.test) == 5
    e = load_torchvision("emnist", tmp_path)
    assert e.train.num_classes == 47


def test_cifar_pickles(tmp_path):
    rng = np.random.default_rng(1)
    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(c10 / name, "wb") as file:
            pickle.dump({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 7]}, file)
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name in ("train", "test"):
        with open(c100 / name, "wb") as file:
            pickle.dump({b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"fine_labels": [5, 99, 0]}, file)
    c = load_torchvision("cifar10", tmp_path)
    assert c.train.x.shape == (10, 3, 32, 32) and c.test.y.tolist() == [1, 7]
    h = load_torchvision("cifar-100", tmp_path)
    assert h.train.num_classes == 100 and h.test.y.tolist() == [5, 99, 0]


def test_missing_files_are_named_and_nothing_is_downloaded(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as info:
        load_torchvision("mnist", tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value) and "does not download" in str(info.value)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_load_dataset_digits_and_flat_models(tmp_path):
    assert load_dataset("digits").train.input_shape == (64,)
    assert load_dataset("digits", image=True).train.input_shape == (1, 8, 8)
    _mnist_like(tmp_path, "MNIST/raw")
    assert load_dataset("mnist", data_dir=tmp_path).train.input_shape == (1, 28, 28)
