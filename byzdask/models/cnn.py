"""A small convolutional network for image datasets (MNIST, CIFAR-10, or digits as 8x8 images)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from byzdask.errors import ConfigurationError

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Two 3x3 convolution blocks (conv, ReLU, 2x2 max-pool), then a hidden linear layer.

    Parameters
    ----------
    input_shape : sequence of int
        ``(channels, height, width)``; height and width at least 4 (two poolings).
    num_classes : int
        Number of classes.
    channels : tuple of int
        Output channels of the two convolutions.
    hidden : int
        Width of the hidden linear layer.

    Raises
    ------
    ConfigurationError
        When ``input_shape`` is not (C, H, W) with H, W >= 4.

    Examples
    --------
    >>> model = SmallCNN((1, 28, 28), 10)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> SmallCNN((3, 32, 32), 10)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, channels: tuple[int, int] = (16, 32),
                 hidden: int = 64) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[1] < 4 or shape[2] < 4:
            raise ConfigurationError(f"input_shape must be (channels, height, width) with height, width >= 4, "
                                     f"got {tuple(input_shape)!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigurationError(f"num_classes must be a positive integer, got {num_classes!r}")
        c, h, w = shape
        self.features = nn.Sequential(
            nn.Conv2d(c, channels[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = channels[1] * (h // 4) * (w // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
