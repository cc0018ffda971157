"""MNIST, Fashion-MNIST, EMNIST, CIFAR-10 and CIFAR-100 from files in torchvision's on-disk layout.

byzdask never downloads and does not need torchvision to read them: the files must already be
under ``data_dir`` as torchvision leaves them (``data_dir/MNIST/raw/train-images-idx3-ubyte``,
``data_dir/cifar-10-batches-py/data_batch_1``...), e.g. after
``torchvision.datasets.MNIST(data_dir, download=True)`` run once. The IDX files (plain or
``.gz``) and the CIFAR pickles are read with numpy.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from byzdask.data.dataset import Dataset, TrainTest
from byzdask.errors import ConfigurationError

__all__ = ["TORCHVISION_DATASETS", "load_torchvision"]


@dataclass(frozen=True)
class _Spec:
    cls_name: str  # torchvision's class, named in messages
    folder: str  # under data_dir
    train: tuple[str, ...]  # IDX: (images, labels); CIFAR: the batch files
    test: tuple[str, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_key: bytes = b""  # CIFAR pickles only

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test)


_IDX = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
_EMNIST = tuple(tuple(f"emnist-balanced-{s}-{k}" for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))
                for s in ("train", "test"))

#: name -> what is read from where (EMNIST: its "balanced" split of 47 classes).
TORCHVISION_DATASETS = {
    "mnist": _Spec("MNIST", "MNIST/raw", *_IDX, 10, (0.1307,), (0.3081,)),
    "fashion-mnist": _Spec("FashionMNIST", "FashionMNIST/raw", *_IDX, 10, (0.2860,), (0.3530,)),
    "emnist": _Spec("EMNIST", "EMNIST/raw", *_EMNIST, 47, (0.1751,), (0.3332,)),
    "cifar10": _Spec("CIFAR10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                     10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), b"labels"),
    "cifar100": _Spec("CIFAR100", "cifar-100-python", ("train",), ("test",), 100, (0.5071, 0.4865, 0.4409),
                      (0.2673, 0.2564, 0.2762), b"fine_labels"),
}


def _path(where: Path, name: str) -> Path:
    plain = where / name
    return plain if plain.exists() or not (where / f"{name}.gz").exists() else where / f"{name}.gz"


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigurationError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigurationError(f"{path} holds {data.size} bytes of data, its header says {shape}")
    return data.reshape(shape)


def _read_split(spec: _Spec, where: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    if spec.label_key:  # CIFAR: pickled dicts of (n, 3072) uint8 rows and label lists
        xs, ys = [], []
        for name in files:
            with open(_path(where, name), "rb") as file:
                batch = pickle.load(file, encoding="bytes")  # noqa: S301 (the user's own dataset files)
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[spec.label_key], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)
    images, labels = (_read_idx(_path(where, name)) for name in files)
    return images[:, None, :, :], labels.astype(np.int64)


def _to_dataset(x: np.ndarray, y: np.ndarray, spec: _Spec, name: str) -> Dataset:
    t = torch.from_numpy(np.array(x, dtype=np.uint8, order="C")).to(torch.float32).div_(255.0)
    t = (t - torch.tensor(spec.mean).view(1, -1, 1, 1)) / torch.tensor(spec.std).view(1, -1, 1, 1)
    return Dataset(t.contiguous(), torch.from_numpy(y), num_classes=spec.num_classes,
                   input_shape=tuple(t.shape[1:]), name=name)


def load_torchvision(name: str, data_dir: str | Path) -> TrainTest:
    """Load a dataset from torchvision's files under ``data_dir`` as normalised float32 ``(n, C, H, W)``.

    Pixels are scaled to [0, 1], then centred and divided per channel by the usual constants
    of each dataset. The train and test splits are the datasets' own.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "emnist", "cifar10", "cifar100"}
        The dataset (case and dashes ignored: ``"FashionMNIST"`` works).
    data_dir : str or Path
        The torchvision root folder that holds the files.

    Returns
    -------
    TrainTest

    Raises
    ------
    ConfigurationError
        For an unknown ``name`` or a file that is not in the expected format.
    FileNotFoundError
        When a file is missing (the message names the folder and every file expected there).

    Examples
    --------
    >>> load_torchvision("svhn", "/data")
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: unknown dataset 'svhn'; choose one of: mnist, fashion-mnist, emnist, cifar10, cifar100
    """
    key = {k.replace("-", ""): k for k in TORCHVISION_DATASETS}.get(str(name).lower().replace("-", ""))
    if key is None:
        raise ConfigurationError(f"unknown dataset {name!r}; choose one of: {', '.join(TORCHVISION_DATASETS)}")
    spec = TORCHVISION_DATASETS[key]
    root = Path(data_dir).expanduser()
    where = root / spec.folder
    missing = [f for f in spec.files if not _path(where, f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{spec.cls_name} was not found under data_dir={str(root)!r}: expected in {where} the files "
            f"{', '.join(spec.files)} (plain or .gz; missing: {', '.join(missing)}). byzdask does not download; run "
            f"`torchvision.datasets.{spec.cls_name}({str(root)!r}, download=True)` once, or pass --data-dir"
        )
    train = _to_dataset(*_read_split(spec, where, spec.train), spec, f"{key}-train")
    test = _to_dataset(*_read_split(spec, where, spec.test), spec, f"{key}-test")
    return TrainTest(train, test)
