"""Small models for flat features (the 64 pixels of scikit-learn's digits)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from byzdask.errors import ConfigurationError

__all__ = ["MLP", "LogisticRegression"]


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


class LogisticRegression(nn.Module):
    r"""Multinomial logistic regression: logits :math:`W x + b`, trained with cross-entropy.

    Samples of any shape are flattened first. Parameters: ``num_classes * (in_features + 1)``
    (650 for digits).

    Parameters
    ----------
    in_features : int
        Number of scalars per sample.
    num_classes : int
        Number of classes.

    Examples
    --------
    >>> model = LogisticRegression(64, 10)
    >>> model(torch.zeros(3, 64)).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([3, 10]), 650)
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(_positive(in_features, "in_features"), _positive(num_classes, "num_classes"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """A fully connected network with ReLU hidden layers and no dropout (so gradients are deterministic).

    Parameters
    ----------
    in_features : int
        Number of scalars per sample (samples are flattened).
    num_classes : int
        Number of classes.
    hidden : sequence of int
        Widths of the hidden layers (default one layer of 64: 4810 parameters on digits).

    Examples
    --------
    >>> model = MLP(64, 10)
    >>> model(torch.zeros(2, 64)).shape, sum(p.numel() for p in model.parameters())
    (torch.Size([2, 10]), 4810)
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64,)) -> None:
        super().__init__()
        widths = [_positive(in_features, "in_features")] + [_positive(int(h), "hidden width") for h in hidden]
        layers: list[nn.Module] = []
        for a, b in pairwise(widths):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], _positive(num_classes, "num_classes")))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
