"""Models and their flat-vector form.

``build_model(name, input_shape=..., num_classes=..., seed=...)`` makes a model from its short
name: ``"logreg"`` (:class:`LogisticRegression`), ``"mlp"`` (:class:`MLP`), ``"cnn"``
(:class:`SmallCNN`), ``"resnet"`` (:class:`SmallResNet`, for CIFAR). Nodes exchange models as flat float32 vectors (:func:`get_flat_params`,
:func:`set_flat_params`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from byzdask.errors import ConfigurationError
from byzdask.models.cnn import SmallCNN
from byzdask.models.digits import MLP, LogisticRegression
from byzdask.models.resnet import SmallResNet
from byzdask.models.vectors import (
    flat_grad,
    get_flat_params,
    num_params,
    set_flat_params,
)

__all__ = [
    "MLP",
    "DATASET_MODELS",
    "MODELS",
    "LogisticRegression",
    "SmallCNN",
    "SmallResNet",
    "build_model",
    "flat_grad",
    "get_flat_params",
    "num_params",
    "set_flat_params",
]


def _logreg(input_shape: tuple[int, ...], num_classes: int, **kw: Any) -> nn.Module:
    return LogisticRegression(int(np.prod(input_shape)), num_classes, **kw)


def _mlp(input_shape: tuple[int, ...], num_classes: int, **kw: Any) -> nn.Module:
    return MLP(int(np.prod(input_shape)), num_classes, **kw)


def _cnn(input_shape: tuple[int, ...], num_classes: int, **kw: Any) -> nn.Module:
    return SmallCNN(input_shape, num_classes, **kw)


def _resnet(input_shape: tuple[int, ...], num_classes: int, **kw: Any) -> nn.Module:
    return SmallResNet(input_shape, num_classes, **kw)


MODELS = {"logreg": _logreg, "mlp": _mlp, "cnn": _cnn, "resnet": _resnet}
#: The models that fit each dataset of ``--dataset`` (the first is its default).
DATASET_MODELS = {"digits": ("logreg", "mlp", "cnn"), "mnist": ("logreg", "mlp", "cnn"),
                  "fashion-mnist": ("logreg", "mlp", "cnn"), "emnist": ("logreg", "mlp", "cnn"),
                  "cifar10": ("cnn", "resnet", "logreg", "mlp"), "cifar100": ("resnet", "cnn", "logreg", "mlp")}


def build_model(name: str, *, input_shape: Sequence[int], num_classes: int, seed: int = 0,
                **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name``, its weights initialised from ``seed``.

    The global torch random state is left as it was.

    Parameters
    ----------
    name : {"logreg", "mlp", "cnn", "resnet"}
        The model.
    input_shape : sequence of int
        Shape of one sample (``dataset.input_shape``); ``"cnn"`` needs ``(C, H, W)``.
    num_classes : int
        Number of classes.
    seed : int
        Seed of the initial weights: same seed, same weights.
    **kwargs
        Passed to the model's class (e.g. ``hidden=(128,)`` for ``"mlp"``).

    Raises
    ------
    ConfigurationError
        For an unknown name or bad shapes.

    Examples
    --------
    >>> a = build_model("mlp", input_shape=(64,), num_classes=10, seed=1)
    >>> b = build_model("mlp", input_shape=(64,), num_classes=10, seed=1)
    >>> bool(torch.equal(get_flat_params(a), get_flat_params(b))), num_params(a)
    (True, 4810)
    """
    if name not in MODELS:
        raise ConfigurationError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return MODELS[name](tuple(int(s) for s in input_shape), num_classes, **kwargs)
