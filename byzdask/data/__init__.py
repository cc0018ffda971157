"""Datasets and their partitions across nodes.

The default dataset is scikit-learn's digits (:func:`load_digits`, no download); MNIST and
CIFAR-10 come through torchvision when the user has them (:func:`load_torchvision`).
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
    "PARTITIONS",
    "TORCHVISION_DATASETS",
    "Dataset",
    "TrainTest",
    "dirichlet_partition",
    "extreme_partition",
    "gamma_partition",
    "iid_partition",
    "label_skew",
    "load_digits",
    "load_torchvision",
    "partition_dataset",
    "skew_summary",
]
