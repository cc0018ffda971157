"""Datasets and their partitions across nodes.

The default dataset is scikit-learn's digits (:func:`load_digits`, no download); MNIST,
Fashion-MNIST, EMNIST, CIFAR-10 and CIFAR-100 are read from torchvision's files when the user
has them on disk (:func:`load_torchvision`, :func:`load_dataset`).
"""

from byzdask.data.dataset import Dataset, TrainTest
from byzdask.data.digits import load_digits
from byzdask.data.partition import (
    PARTITIONS,
    dirichlet_partition,
    extreme_partition,
    gamma_partition,
    iid_partition,
    label_skew,
    partition_dataset,
    skew_summary,
)
from byzdask.data.torchvision import TORCHVISION_DATASETS, load_torchvision

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "TORCHVISION_DATASETS",
    "Dataset",
    "TrainTest",
    "dirichlet_partition",
    "extreme_partition",
    "gamma_partition",
    "iid_partition",
    "label_skew",
    "load_dataset",
    "load_digits",
    "load_torchvision",
    "partition_dataset",
    "skew_summary",
]

#: Names of ``--dataset``: digits (scikit-learn, no files) and the torchvision ones.
DATASETS = ("digits", *TORCHVISION_DATASETS)


def load_dataset(name: str = "digits", *, data_dir=None, seed: int = 0, image: bool = False) -> TrainTest:
    """The dataset ``name``: digits from scikit-learn, the others from torchvision's files in ``data_dir``.

    ``image`` shapes digits ``(1, 8, 8)`` (for a CNN); the torchvision datasets are always
    ``(C, H, W)``. ``seed`` is the seed of the digits split (the others have their own split).

    Examples
    --------
    >>> load_dataset("digits").train.input_shape
    (64,)
    >>> load_dataset("mnist", data_dir=None)
    Traceback (most recent call last):
    ...
    byzdask.errors.ConfigurationError: dataset 'mnist' is read from torchvision's files on disk: pass data_dir (--data-dir), the folder that holds MNIST/raw
    """
    from byzdask.errors import ConfigurationError

    if str(name) == "digits":
        return load_digits(seed=seed, image=image)
    key = str(name).lower().replace("-", "")
    spec = {k.replace("-", ""): v for k, v in TORCHVISION_DATASETS.items()}.get(key)
    if spec is None:
        raise ConfigurationError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if data_dir is None:
        raise ConfigurationError(f"dataset {name!r} is read from torchvision's files on disk: pass data_dir "
                                 f"(--data-dir), the folder that holds {spec.folder}")
    return load_torchvision(name, data_dir)
