"""Input checks shared by the attacks: honest vectors and templates, as :class:`Batch` objects."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.arrays import Batch, as_batch

__all__ = ["check_real", "honest_batch", "require_honest", "template_batch"]


def require_honest(honest_grads: Any, who: str) -> None:
    """Raise :class:`InputError` unless ``honest_grads`` holds at least one vector."""
    if honest_grads is None:
        raise InputError(f"{who} needs honest_grads (a sequence of the honest vectors), got None")
    if len(honest_grads) == 0:
        raise InputError(f"{who} needs at least one honest vector in honest_grads, got an empty sequence")


def honest_batch(honest_grads: Any, who: str) -> Batch:
    """All honest vectors stacked into a :class:`Batch` (a sequence of vectors or one stacked array)."""
    require_honest(honest_grads, who)
    return as_batch(honest_grads, what=f"{who} honest_grads")


def template_batch(who: str, honest_grads: Any = None, base_grad: Any = None) -> Batch:
    """A one-row :class:`Batch` giving the family, dtype, device and shape of the output.

    The first honest vector when ``honest_grads`` is given, else ``base_grad``.
    """
    if honest_grads is not None:
        require_honest(honest_grads, who)
        return as_batch([honest_grads[0]], what=f"{who} honest_grads")
    if base_grad is not None:
        return as_batch([base_grad], what=f"{who} base_grad")
    raise InputError(f"{who} needs honest_grads (or base_grad) to know the shape of its output, got neither")


def check_real(value: Any, name: str, who: str, *, minimum: float | None = None) -> float:
    """A finite real parameter (>= ``minimum`` when given), else :class:`ConfigurationError`."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        ok = math.isfinite(float(value)) and (minimum is None or value >= minimum)
    if not ok:
        expected = "a finite number" + ("" if minimum is None else f" >= {minimum}")
        raise ConfigurationError(f"{who}: {name} must be {expected}, got {value!r}")
    return float(value)
