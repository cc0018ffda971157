"""The in-memory dataset that nodes train on: float32 features and int64 labels as torch tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from byzdask.errors import InputError

__all__ = ["Dataset", "TrainTest"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features, labels and what a model needs to know about them.

    Parameters
    ----------
    x : torch.Tensor
        ``(n, *input_shape)`` float32 features.
    y : torch.Tensor
        ``(n,)`` int64 labels in ``[0, num_classes)``.
    num_classes : int
        Number of classes (not only those present: a non-IID shard may miss some).
    input_shape : tuple of int
        Shape of one sample, e.g. ``(64,)`` for flat digits, ``(1, 28, 28)`` for MNIST.
    name : str
        A label for logs.

    Raises
    ------
    InputError
        When the shapes or dtypes disagree.

    Examples
    --------
    >>> import torch
    >>> ds = Dataset(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]), num_classes=2, input_shape=(3,))
    >>> len(ds), ds.subset([1, 2]).y.tolist()
    (4, [1, 1])
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise InputError(
                f"x and y must be torch tensors, got {type(self.x).__name__} and {type(self.y).__name__}"
            )
        if self.x.dtype != torch.float32:
            raise InputError(f"x must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise InputError(f"y must be a 1-D int64 tensor, got {self.y.dtype} with shape {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise InputError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if tuple(self.x.shape[1:]) != self.input_shape:
            raise InputError(f"x samples have shape {tuple(self.x.shape[1:])}, expected input_shape {self.input_shape}")
        if self.y.numel() and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise InputError(
                f"labels must lie in [0, {self.num_classes}), got range [{int(self.y.min())}, {int(self.y.max())}]"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_features(self) -> int:
        """Number of scalars in one sample."""
        return int(np.prod(self.input_shape))

    def subset(self, indices: Any) -> Dataset:
        """The samples at ``indices`` (a sequence or array of ints), in that order."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return Dataset(self.x[idx], self.y[idx], self.num_classes, self.input_shape, self.name)

    def class_counts(self) -> np.ndarray:
        """``(num_classes,)`` number of samples of each class."""
        return np.bincount(self.y.numpy(), minlength=self.num_classes)


@dataclass(frozen=True, eq=False)
class TrainTest:
    """A train split and a test split of one dataset."""

    train: Dataset
    test: Dataset
