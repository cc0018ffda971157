"""scikit-learn's handwritten digits: the default dataset (it ships with scikit-learn, no download)."""

from __future__ import annotations

import numpy as np
import torch

from byzdask.data.dataset import Dataset, TrainTest
from byzdask.errors import ConfigurationError

__all__ = ["SCALINGS", "load_digits"]

SCALINGS = ("standard", "unit")


def load_digits(*, seed: int = 0, test_fraction: float = 0.2, scaling: str = "standard",
                image: bool = False) -> TrainTest:
    """Load the 1797 8x8 digit images of scikit-learn, split into train and test.

    The split is stratified by class and drawn with ``seed``. Features are float32 torch
    tensors, labels int64.

    Parameters
    ----------
    seed : int
        Seed of the stratified split.
    test_fraction : float
        Share of the samples in the test split, in (0, 1).
    scaling : {"standard", "unit"}
        ``"standard"``: each pixel centred and divided by its standard deviation, both measured
        on the train split only (pixels constant on the train split are only centred);
        ``"unit"``: pixel intensities (0..16) divided by 16, into [0, 1].
    image : bool
        Shape the samples ``(1, 8, 8)`` (for a CNN) instead of ``(64,)``.

    Returns
    -------
    TrainTest
        ``train`` and ``test`` :class:`~byzdask.data.dataset.Dataset` with 10 classes.

    Raises
    ------
    ConfigurationError
        For an unknown ``scaling`` or a ``test_fraction`` outside (0, 1).

    Examples
    --------
    >>> split = load_digits(seed=0)
    >>> len(split.train), len(split.test), split.train.input_shape, split.train.num_classes
    (1437, 360, (64,), 10)
    >>> split.train.x.dtype
    torch.float32
    """
    if scaling not in SCALINGS:
        raise ConfigurationError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigurationError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    if scaling == "standard":
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std == 0] = 1.0
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    else:
        x_tr, x_te = x_tr / 16.0, x_te / 16.0
    shape = (1, 8, 8) if image else (64,)

    def make(xs: np.ndarray, ys: np.ndarray, part: str) -> Dataset:
        xt = torch.from_numpy(np.ascontiguousarray(xs, dtype=np.float32)).reshape(-1, *shape)
        return Dataset(xt, torch.from_numpy(ys), num_classes=10, input_shape=shape, name=f"digits-{part}")

    return TrainTest(make(x_tr, y_tr, "train"), make(x_te, y_te, "test"))
