"""The honest node: stochastic gradients on its own shard, with optional worker momentum."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from byzdask.data.dataset import Dataset
from byzdask.engine.node.base import LossFn, Node
from byzdask.errors import ConfigurationError

__all__ = ["HonestNode"]


class HonestNode(Node):
    r"""A node that follows the protocol: it sends the (momentum) gradient of its own data.

    **Worker momentum** (the convention of ByzFL, after Farhadkhani et al., ICML 2022, and
    Allouah et al., AISTATS 2023): the buffer starts at zero and each round

    .. math:: m_t = \beta\, m_{t-1} + (1 - \beta)\, g_t,

    where :math:`g_t` is the minibatch gradient at the current parameters; the node sends
    :math:`m_t` (so the first vector is :math:`(1-\beta) g_1`, with no bias correction). With
    ``momentum=0`` it sends :math:`g_t`.

    Parameters
    ----------
    model : torch.nn.Module
        The node's copy of the model (its parameters are set by the orchestrator, or by
        :meth:`local_step` in peer-to-peer training).
    data : Dataset
        The node's shard.
    batch_size : int
        Minibatch size.
    momentum : float
        :math:`\beta \in [0, 1)`.
    seed : int
        Seed of the minibatches: minibatch ``t`` is a function of ``(seed, t)`` only.
    node_id : int
        The node's id (its place in node order).
    loss_fn : callable, optional
        ``loss_fn(logits, labels)``; default mean cross-entropy.

    Notes
    -----
    Subclass to plug in your own model and data: pass any ``nn.Module`` and
    :class:`~byzdask.data.Dataset`; override :meth:`compute_gradient(x, y)
    <byzdask.engine.node.base.Node.compute_gradient>` for another objective or
    :meth:`sample_batch(step) <byzdask.engine.node.base.Node.sample_batch>` for another
    sampler. Keep them deterministic functions of their arguments and the node's fields, so
    that a Dask task running :meth:`gradient_at` on a copy of the node gives the same vector.

    Cost of :meth:`gradient`: one forward and backward pass on ``batch_size`` samples, plus
    O(d) for the momentum.

    Examples
    --------
    >>> from byzdask.data import load_digits
    >>> from byzdask.models import build_model
    >>> train = load_digits(seed=0).train
    >>> node = HonestNode(build_model("logreg", input_shape=(64,), num_classes=10), train.subset(range(100)),
    ...                   batch_size=16, momentum=0.9, seed=3)
    >>> g = node.gradient()
    >>> g.shape, g.dtype, node.step
    (torch.Size([650]), torch.float32, 1)
    """

    def __init__(self, model: nn.Module, data: Dataset, *, batch_size: int = 32, momentum: float = 0.0,
                 seed: int = 0, node_id: int = 0, loss_fn: LossFn | None = None) -> None:
        if model is None or data is None:
            raise ConfigurationError("an HonestNode needs a model and a data shard, got None")
        super().__init__(model, data, batch_size=batch_size, seed=seed, node_id=node_id, loss_fn=loss_fn)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating)) \
                or not 0.0 <= float(momentum) < 1.0:
            raise ConfigurationError(f"momentum must be a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        #: The momentum buffer :math:`m_{t}` (None before the first gradient or without momentum).
        self.momentum_buffer: torch.Tensor | None = None

    def gradient_at(self, params: Any = None, *, step: int, buffer: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The vector this node sends at ``step``, without touching its step counter or buffer.

        Parameters
        ----------
        params : flat vector, optional
            Parameters to evaluate the gradient at (written into the model); default: the
            model's current parameters.
        step : int
            Index of the minibatch.
        buffer : torch.Tensor, optional
            The momentum buffer before this step (None: zero).

        Returns
        -------
        (vector, new_buffer)
            The flat float32 vector to send, and the buffer after this step (None when
            ``momentum == 0``).
        """
        if params is not None:
            self.set_params(params)
        x, y = self.sample_batch(step)
        grad = self.compute_gradient(x, y)
        if self.momentum == 0.0:
            return grad, None
        new = (1.0 - self.momentum) * grad if buffer is None else self.momentum * buffer + (1.0 - self.momentum) * grad
        return new.clone(), new

    def gradient(self) -> torch.Tensor:
        """The next vector to send: gradient (with momentum when ``momentum > 0``) on the next minibatch.

        Advances :attr:`step` and updates :attr:`momentum_buffer`.
        """
        vector, self.momentum_buffer = self.gradient_at(step=self.step, buffer=self.momentum_buffer)
        self.step += 1
        return vector

    def local_step(self, lr: float, *, weight_decay: float = 0.0) -> torch.Tensor:
        r"""One SGD step on the node's own vector: :math:`x \leftarrow x - \eta\,(v + \lambda x)`.

        Used by peer-to-peer training before the exchange. Returns the new parameters (a copy).
        """
        vector = self.gradient()
        params = self.params()
        if weight_decay:
            vector = vector + float(weight_decay) * params
        new = params - float(lr) * vector
        self.set_params(new)
        return new
