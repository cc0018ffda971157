"""Models as flat float32 vectors: what nodes exchange."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from byzdask.errors import InputError

__all__ = ["flat_grad", "get_flat_params", "num_params", "set_flat_params"]


def num_params(model: nn.Module) -> int:
    """Number of scalars in the model's parameters.

    Examples
    --------
    >>> num_params(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters())


def get_flat_params(model: nn.Module) -> torch.Tensor:
    """A detached copy of the parameters as one vector, in ``model.parameters()`` order.

    Examples
    --------
    >>> lin = nn.Linear(2, 1)
    >>> _ = lin.weight.data.fill_(1.0), lin.bias.data.fill_(-1.0)
    >>> get_flat_params(lin).tolist()
    [1.0, 1.0, -1.0]
    """
    return parameters_to_vector(model.parameters()).detach().clone()


def set_flat_params(model: nn.Module, vector: torch.Tensor) -> None:
    """Write ``vector`` (any float dtype, numpy or torch) into the model's parameters, in place.

    Raises
    ------
    InputError
        When the length differs from :func:`num_params`, or the vector is not 1-D.

    Examples
    --------
    >>> lin = nn.Linear(2, 1)
    >>> set_flat_params(lin, torch.tensor([1.0, 2.0, 3.0]))
    >>> lin.bias.item()
    3.0
    """
    vec = torch.as_tensor(vector)
    expected = num_params(model)
    if vec.ndim != 1 or vec.numel() != expected:
        raise InputError(f"expected a 1-D vector of {expected} parameters, got shape {tuple(vec.shape)}")
    first = next(model.parameters())
    with torch.no_grad():
        vector_to_parameters(vec.to(dtype=first.dtype, device=first.device), model.parameters())


def flat_grad(model: nn.Module) -> torch.Tensor:
    """The parameters' ``.grad`` as one vector (zeros where a parameter has no gradient).

    Examples
    --------
    >>> lin = nn.Linear(2, 1)
    >>> lin(torch.ones(1, 2)).sum().backward()
    >>> flat_grad(lin).tolist()
    [1.0, 1.0, 1.0]
    """
    parts = [torch.zeros_like(p).reshape(-1) if p.grad is None else p.grad.detach().reshape(-1)
             for p in model.parameters()]
    return torch.cat(parts)
