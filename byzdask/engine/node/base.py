"""What every training node shares: a torch model, an optional data shard, seeded minibatches.

Models travel as flat float32 vectors (:mod:`byzdask.models.vectors`). A node pickles (model,
tensors, plain numbers), so an orchestrator can ship it to a Dask worker or hold it in an actor.
Minibatch ``t`` of a node is a pure function of ``(seed, t)``: two nodes built alike draw the
same batches, whatever process runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from byzdask.data.dataset import Dataset
from byzdask.errors import ConfigurationError, InputError
from byzdask.models.vectors import (
    flat_grad,
    get_flat_params,
    num_params,
    set_flat_params,
)

__all__ = ["LossFn", "Node", "batch_indices", "evaluate_model", "stochastic_gradient"]

#: ``loss_fn(logits, labels) -> scalar tensor``; the default is the mean cross-entropy.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_indices(num_samples: int, batch_size: int, *, seed: int, step: int) -> np.ndarray:
    """Indices of minibatch ``step``: ``min(batch_size, num_samples)`` distinct samples.

    Drawn without replacement inside the batch, independently across steps: the samples with
    the smallest keys of a counter-based hash of ``(seed, step, sample)``
    (:func:`~byzdask.engine.node.batched.batch_index_block`, which draws many nodes and steps in
    one call). A pure function, so a batch can be recomputed anywhere.

    Examples
    --------
    >>> a = batch_indices(100, 4, seed=7, step=3)
    >>> bool((a == batch_indices(100, 4, seed=7, step=3)).all()), len(set(a.tolist()))
    (True, 4)
    """
    from byzdask.engine.node.batched import batch_index_block

    return batch_index_block([int(num_samples)], int(batch_size), [int(seed)], [[int(step)]])[0, 0]


def stochastic_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        loss_fn: LossFn | None = None) -> torch.Tensor:
    """Flat gradient of ``loss_fn(model(x), y)`` with respect to the model's parameters.

    The model's ``.grad`` fields are overwritten. Cost: one forward and one backward pass.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> stochastic_gradient(lin, torch.ones(3, 2), torch.tensor([0, 1, 1])).shape
    torch.Size([6])
    """
    loss_fn = loss_fn or functional.cross_entropy
    model.train()
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    return flat_grad(model)


@torch.no_grad()
def evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None = None,
                   *, batch_size: int = 4096) -> tuple[float, float]:
    """``(accuracy, mean loss)`` of ``model`` on ``(x, y)``, in evaluation mode, in chunks.

    Non-finite logits (a model wrecked by an attack) count as wrong predictions; the loss
    is then ``nan`` or ``inf``.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> _ = lin.weight.data.copy_(torch.eye(2)), lin.bias.data.zero_()
    >>> evaluate_model(lin, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))[0]
    0.5
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"x and y must hold the same positive number of samples, got {x.shape[0]} and {y.shape[0]}")
    loss_fn = loss_fn or functional.cross_entropy
    model.eval()
    correct, total_loss = 0, 0.0
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model(xb)
        finite = torch.isfinite(logits).all(dim=1)
        correct += int(((logits.argmax(dim=1) == yb) & finite).sum())
        total_loss += float(loss_fn(logits, yb)) * xb.shape[0]
    return correct / x.shape[0], total_loss / x.shape[0]


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Node:
    """Base of honest and Byzantine nodes: a model, an optional shard, seeded minibatches.

    Parameters
    ----------
    model : torch.nn.Module or None
        The node's model (Byzantine nodes may have none).
    data : Dataset or None
        The node's training shard.
    batch_size : int
        Minibatch size (a shard smaller than that gives its whole self).
    seed : int
        Seed of the minibatches (see :func:`batch_indices`).
    node_id : int
        The node's id in the job (its position in node order).
    loss_fn : callable, optional
        ``loss_fn(logits, labels)``; default mean cross-entropy.

    Subclassing: override :meth:`sample_batch` to draw data another way, or
    :meth:`compute_gradient` to change what a gradient is (another loss, a regulariser).
    """

    def __init__(self, model: nn.Module | None = None, data: Dataset | None = None, *, batch_size: int = 32,
                 seed: int = 0, node_id: int = 0, loss_fn: LossFn | None = None) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise ConfigurationError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if data is not None and not isinstance(data, Dataset):
            raise ConfigurationError(f"data must be a byzdask.data.Dataset, got {type(data).__name__}")
        if data is not None and len(data) == 0:
            raise ConfigurationError("data must hold at least one sample, got an empty shard")
        self.model = model
        self.data = data
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.node_id = _check_int(node_id, "node_id", 0)
        self.loss_fn = loss_fn
        #: Number of minibatches drawn so far (the index of the next one).
        self.step = 0

    # -- parameters ---------------------------------------------------------------------
    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise ConfigurationError(f"{type(self).__name__} {self.node_id} has no model")
        return self.model

    def params(self) -> torch.Tensor:
        """A copy of the model's parameters as one flat vector."""
        return get_flat_params(self._require_model())

    def set_params(self, vector: Any) -> None:
        """Write a flat vector (torch or numpy) into the model's parameters."""
        set_flat_params(self._require_model(), vector)

    @property
    def num_params(self) -> int:
        """Length of the node's flat vectors."""
        return num_params(self._require_model())

    # -- data ---------------------------------------------------------------------------
    def sample_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Minibatch number ``step`` of the node's shard (a pure function of seed and step)."""
        if self.data is None:
            raise ConfigurationError(f"{type(self).__name__} {self.node_id} has no data")
        idx = torch.from_numpy(batch_indices(len(self.data), self.batch_size, seed=self.seed, step=step))
        return self.data.x[idx], self.data.y[idx]

    def compute_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The raw stochastic gradient on ``(x, y)`` at the model's current parameters."""
        return stochastic_gradient(self._require_model(), x, y, self.loss_fn)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """``(accuracy, mean loss)`` of the node's model on ``(x, y)``."""
        return evaluate_model(self._require_model(), x, y, self.loss_fn)

    def __repr__(self) -> str:
        size = None if self.data is None else len(self.data)
        return f"{type(self).__name__}(node_id={self.node_id}, samples={size}, step={self.step})"
