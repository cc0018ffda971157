"""Label flip attack: the gradient of the model on deliberately wrong labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from byzdask.attacks._common import check_real
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError

__all__ = ["LabelFlipAttack"]


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


class LabelFlipAttack(Attack):
    r"""Send the gradient of the loss on flipped labels.

    .. math:: b = s \cdot \nabla_\theta \, L\big(h_\theta(x), \pi(y)\big), \qquad
              \pi(y) = K - 1 - y \ \text{(default)} \quad\text{or a user mapping}

    The gradient is taken with respect to every parameter of ``model`` that requires a gradient,
    in ``model.parameters()`` order, flattened and concatenated into one vector (a parameter
    that does not reach the loss contributes zeros).

    Parameters
    ----------
    num_classes : int or "auto", keyword-only
        K, for the default flip y -> K - 1 - y. ``"auto"``: K is the size of the model output's
        last dimension, read at the call. Give it, or a ``mapping`` (as in ByzPy, neither is a
        ``ValueError``).
    mapping : mapping of int to int or None, keyword-only
        Explicit flip {label: new label}; labels not in it are kept. Overrides the default flip.
    loss_fn : callable or None, keyword-only
        ``loss_fn(logits, targets) -> scalar``; default
        ``torch.nn.functional.cross_entropy`` (mean over the batch).
    scale : float, keyword-only, default 1.0
        The factor s (finite).

    Notes
    -----
    Definition as in ByzPy 0.1.4 (``LabelFlipAttack``). Unlike ByzPy, the gradient is computed
    with ``torch.autograd.grad``: the model's ``.grad`` fields and its train/eval mode are left
    as they were.

    Preconditions: a ``torch.nn.Module`` ``model`` with at least one trainable parameter, a
    tensor batch ``x`` and integer labels ``y``; with the default flip, labels in [0, K).

    Cost: one forward and one backward pass of the model on the batch.

    References
    ----------
    .. [1] Z. Allen-Zhu, F. Ebrahimian, J. Li, D. Alistarh, "Byzantine-resilient non-convex
           stochastic gradient descent", ICLR 2021 (label flipping among its attacks).

    .. [2] Y. Allouah, S. Farhadkhani, R. Guerraoui, N. Gupta, R. Pinot, J. Stephan, "Fixing by
           Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(3, 4)
    >>> x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 0])
    >>> g = LabelFlipAttack(num_classes="auto").apply(model=model, x=x, y=y)
    >>> g.shape, model.weight.grad is None  # 4*3 weights + 4 biases; no grad left on the model
    (torch.Size([16]), True)
    """

    name = "label_flip"
    uses_model_batch = True

    def __init__(self, *, num_classes: int | str | None = None, mapping: Mapping[int, int] | None = None,
                 loss_fn: Callable[[Any, Any], Any] | None = None, scale: float = 1.0) -> None:
        neither = num_classes is None and mapping is None
        if num_classes == "auto":
            num_classes = None
        elif num_classes is not None and (not _is_int(num_classes) or num_classes < 1):
            raise ConfigurationError(
                f"LabelFlipAttack: num_classes must be an integer >= 1 or 'auto', got {num_classes!r}"
            )
        if mapping is not None:
            if not isinstance(mapping, Mapping) or not all(
                _is_int(k) and _is_int(v) and k >= 0 and v >= 0 for k, v in mapping.items()
            ):
                raise ConfigurationError(
                    f"LabelFlipAttack: mapping must be a mapping of non-negative int labels to int labels, got {mapping!r}"
                )
            mapping = {int(k): int(v) for k, v in mapping.items()}
        if loss_fn is not None and not callable(loss_fn):
            raise ConfigurationError(f"LabelFlipAttack: loss_fn must be callable, got {type(loss_fn).__name__}")
        scale = check_real(scale, "scale", "LabelFlipAttack")
        if neither:
            raise ConfigurationError(
                "LabelFlipAttack needs num_classes (an integer K, or 'auto' to read K from the model's "
                "output) or a mapping {label: new label}; got neither"
            )
        self.num_classes = None if num_classes is None else int(num_classes)
        self.mapping = mapping
        self.loss_fn = loss_fn
        self.scale = scale
        self._repr_params = {"num_classes": self.num_classes, "mapping": self.mapping, "scale": self.scale}

    def flip(self, y: Any, num_classes: int) -> Any:
        """The flipped labels of an integer tensor ``y`` (K - 1 - y, or the mapping)."""
        import torch

        if self.mapping is not None:
            out = y.clone()
            for src, dst in self.mapping.items():
                out[y == src] = dst
            return out
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise InputError(
                f"LabelFlipAttack: labels must lie in [0, {num_classes}) to flip y -> {num_classes - 1} - y, "
                f"got labels in [{int(y.min())}, {int(y.max())}]"
            )
        return torch.as_tensor(num_classes - 1, dtype=y.dtype, device=y.device) - y

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return the flattened gradient of ``loss_fn(model(x), flip(y))``, times ``scale``."""
        import torch
        import torch.nn.functional as F

        if not isinstance(model, torch.nn.Module):
            raise InputError(f"LabelFlipAttack needs model, a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise InputError(
                f"LabelFlipAttack needs x and y as torch tensors, got x: {type(x).__name__}, y: {type(y).__name__}"
            )
        if y.is_floating_point() or y.is_complex():
            raise InputError(f"LabelFlipAttack needs integer class labels y, got dtype {y.dtype}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise InputError("LabelFlipAttack: the model has no parameter that requires a gradient")
        with torch.enable_grad():
            logits = model(x)
            k = self.num_classes if self.num_classes is not None else int(logits.shape[-1])
            targets = self.flip(y.to(device=logits.device, dtype=torch.long), k)
            loss = (self.loss_fn or F.cross_entropy)(logits, targets)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = torch.cat([
            (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
        ]).detach()
        return flat * self.scale if self.scale != 1.0 else flat
