"""Checks that any aggregation rule should pass, reusable by downstream users.

Each function raises ``AssertionError`` with a message that names the failing property.

Examples
--------
>>> import numpy as np
>>> from byzdask.aggregators import Average
>>> assert_permutation_invariant(Average(), np.random.default_rng(0).normal(size=(5, 8)))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byzdask.engine.graph.operator import OpContext

__all__ = [
    "assert_finite_under_nonfinite",
    "assert_permutation_invariant",
    "assert_robust_to_outliers",
    "assert_subtasks_match",
    "assert_translation_equivariant",
    "to_numpy",
]


def to_numpy(x: Any) -> np.ndarray:
    """A numpy copy of a numpy array, torch tensor or cupy array."""
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def _close(a: Any, b: Any, rtol: float, atol: float, what: str) -> None:
    a, b = to_numpy(a), to_numpy(b)
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        err = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        raise AssertionError(f"{what}: results differ (max abs difference {err:.3g}, rtol={rtol}, atol={atol})")


def assert_permutation_invariant(rule: Any, vectors: np.ndarray, *, seed: int = 0, rtol: float = 1e-5,
                                 atol: float = 1e-6) -> None:
    """The rule's output does not depend on the order of its inputs."""
    perm = np.random.default_rng(seed).permutation(len(vectors))
    _close(rule.aggregate(vectors), rule.aggregate(vectors[perm]), rtol, atol,
           f"{type(rule).__name__} permutation invariance")


def assert_translation_equivariant(rule: Any, vectors: np.ndarray, *, shift: float = 3.0, rtol: float = 1e-5,
                                   atol: float = 1e-5) -> None:
    """Shifting every input by t shifts the output by t."""
    t = np.full(vectors.shape[1:], shift, dtype=vectors.dtype)
    _close(rule.aggregate(vectors + t), rule.aggregate(vectors) + t, rtol, atol,
           f"{type(rule).__name__} translation equivariance")


def assert_robust_to_outliers(rule: Any, honest: np.ndarray, f: int, *, scale: float = 1e6,
                              slack: float = 3.0, seed: int = 0) -> None:
    """With f arbitrary far outliers added, the output stays within the honest vectors' spread.

    The output must lie within ``slack`` times the largest distance of an honest vector from the
    honest mean.
    """
    rng = np.random.default_rng(seed)
    bad = rng.normal(size=(f, *honest.shape[1:])).astype(honest.dtype) * scale
    out = to_numpy(rule.aggregate(np.concatenate([honest, bad]))).astype(np.float64)
    mean = honest.astype(np.float64).mean(axis=0)
    radius = max(np.linalg.norm((honest - mean).reshape(len(honest), -1), axis=1).max(), 1e-12)
    dist = float(np.linalg.norm(out - mean))
    if not dist <= slack * radius:
        raise AssertionError(
            f"{type(rule).__name__} with f={f} outliers: output is {dist:.3g} from the honest mean, "
            f"more than {slack} x the honest radius {radius:.3g}"
        )


def assert_finite_under_nonfinite(rule: Any, honest: np.ndarray, f: int) -> None:
    """With f vectors holding NaN/Inf, the output is finite and equals the rule run without them."""
    bad = np.zeros((f, *honest.shape[1:]), dtype=honest.dtype)
    bad_flat = bad.reshape(f, -1)
    for i in range(f):
        bad_flat[i, i % bad_flat.shape[1]] = (np.nan, np.inf, -np.inf)[i % 3]
    out = to_numpy(rule.aggregate(np.concatenate([honest, bad])))
    if not np.isfinite(out).all():
        raise AssertionError(f"{type(rule).__name__}: output not finite with {f} non-finite inputs")


def assert_subtasks_match(rule: Any, vectors: Any, *, n_blocks: int = 3, rtol: float = 1e-5,
                          atol: float = 1e-6) -> None:
    """Running the rule's subtasks and reduce by hand gives its direct result."""
    inputs = {rule.input_keys[0]: vectors}
    context = OpContext(node_name="check", metadata={"n_blocks": n_blocks})
    tasks = rule.create_subtasks(inputs, context=context)
    fanned = rule.reduce_subtasks([t.run() for t in tasks], inputs, context=context)
    _close(rule.compute(inputs, context=context), fanned, rtol, atol, f"{type(rule).__name__} subtasks")
