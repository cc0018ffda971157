"""MNIST and CIFAR-10 through torchvision, when the user has the package and the files on disk.

byzdask never downloads: the files must already be under ``data_dir`` in torchvision's layout
(``data_dir/MNIST/raw/...`` and ``data_dir/cifar-10-batches-py/...``), e.g. after
``torchvision.datasets.MNIST(data_dir, download=True)`` run once by the user.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from byzdask.data.dataset import Dataset, TrainTest
from byzdask.errors import ConfigurationError

__all__ = ["TORCHVISION_DATASETS", "load_torchvision"]

# name -> (torchvision class, folder torchvision expects under the root, per-channel mean, std)
TORCHVISION_DATASETS = {
    "mnist": ("MNIST", "MNIST", (0.1307,), (0.3081,)),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def _to_dataset(raw, mean: tuple[float, ...], std: tuple[float, ...], name: str) -> Dataset:
    data = torch.as_tensor(np.asarray(raw.data))
    if data.ndim == 3:  # MNIST: (n, H, W)
        data = data.unsqueeze(1)
    else:  # CIFAR-10: (n, H, W, C)
        data = data.permute(0, 3, 1, 2)
    x = data.to(torch.float32).div_(255.0)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    y = torch.as_tensor(np.asarray(raw.targets), dtype=torch.int64)
    return Dataset(x.contiguous(), y, num_classes=10, input_shape=tuple(x.shape[1:]), name=name)


def load_torchvision(name: str, data_dir: str | Path) -> TrainTest:
    """Load MNIST or CIFAR-10 from ``data_dir`` as normalised float32 ``(n, C, H, W)`` tensors.

    Pixels are scaled to [0, 1], then centred and divided per channel by the usual constants
    of each dataset. The train and test splits are the datasets' own.

    Parameters
    ----------
    name : {"mnist", "cifar10"}
        The dataset.
    data_dir : str or Path
        The torchvision root folder that holds the files.

    Returns
    -------
    TrainTest

    Raises
    ------
    ConfigurationError
        For an unknown ``name``.
    FileNotFoundError
        When the dataset's folder is not under ``data_dir`` (the message names the path).
    ImportError
        When torchvision is not installed (the message names the package and the path).

    Examples
    --------
    >>> load_torchvision("svhn", "/data")
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: unknown dataset 'svhn'; choose one of: mnist, cifar10
    """
    key = str(name).lower().replace("-", "")
    if key not in TORCHVISION_DATASETS:
        raise ConfigurationError(f"unknown dataset {name!r}; choose one of: {', '.join(TORCHVISION_DATASETS)}")
    cls_name, folder, mean, std = TORCHVISION_DATASETS[key]
    root = Path(data_dir).expanduser()
    where = root / folder
    if not where.is_dir():
        raise FileNotFoundError(
            f"{cls_name} was not found: expected the folder {where} (torchvision's layout under "
            f"data_dir={str(root)!r}); byzdask does not download, run "
            f"`torchvision.datasets.{cls_name}({str(root)!r}, download=True)` once"
        )
    try:
        datasets = importlib.import_module("torchvision.datasets")
    except ImportError as err:
        raise ImportError(
            f"loading {cls_name} from {where} needs the package 'torchvision', which is not installed; "
            f"install the build that matches torch {torch.__version__} (pip install torchvision), "
            f"or use the default dataset (byzdask.data.load_digits)"
        ) from err
    factory = getattr(datasets, cls_name)
    train = factory(str(root), train=True, download=False)
    test = factory(str(root), train=False, download=False)
    return TrainTest(_to_dataset(train, mean, std, f"{key}-train"), _to_dataset(test, mean, std, f"{key}-test"))
