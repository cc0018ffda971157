"""Helpers shared by the clustering rules: parameter checks and clipping factors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.errors import ConfigurationError


def real(value: Any, name: str, *, positive: bool = True, allow_none: bool = False) -> float | None:
    """A finite number (> 0 when ``positive``, else >= 0), or None when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ConfigurationError(f"{name} must be {kind} finite number{' or None' if allow_none else ''}, "
                                 f"got {value!r}")
    return float(value)


def clip_factors(norms: np.ndarray, threshold: float) -> np.ndarray:
    """``min(1, threshold / ||x_i||)`` per row (1 for a zero row)."""
    return np.divide(threshold, norms, out=np.ones_like(norms), where=norms > threshold)
