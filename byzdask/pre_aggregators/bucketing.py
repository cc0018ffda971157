"""Bucketing: shuffle the vectors, then average them in buckets of a fixed size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from byzdask.errors import ConfigurationError, InputError
from byzdask.kernels.prepro import bucket_means
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["Bucketing"]


class Bucketing(PreAggregator):
    r"""Randomly permute the n vectors and output the mean of each bucket of ``bucket_size``.

    With a permutation :math:`\pi` of the n indices and bucket size s,

    .. math:: y_j = \frac{1}{|B_j|} \sum_{i \in B_j} x_{\pi(i)}, \qquad
              B_j = \{ j s, \dots, \min((j+1) s, n) - 1 \}, \quad j = 0, \dots, \lceil n/s \rceil - 1

    so the output has ceil(n / s) vectors; when s does not divide n the last bucket holds the
    n mod s remaining vectors.

    Parameters
    ----------
    bucket_size : int
        s >= 1 (ByzFL calls it ``s``). s = 1 only shuffles.
    seed : int or None, keyword-only
        Seed of the permutation (``numpy.random.default_rng(seed)``). With an int, every call
        draws the same permutation, so the output is reproducible: same seed and inputs, same
        output. With None (the default) every call draws a fresh permutation from OS entropy.
    perm : sequence of int or None, keyword-only
        A fixed permutation of ``range(n)`` to use instead of a random one (as ByzPy's ``perm``);
        a call on a different n, or with ``perm`` not a permutation, raises ``InputError``.

    Notes
    -----
    Definition as in ByzFL 0.0.11 (``Bucketing``).

    Preconditions: none on n. The rule that follows sees ceil(n / s) vectors, of which up to f
    (one per Byzantine input) may be corrupted: give it an f accordingly.

    Non-finite inputs: a bucket that holds a vector with NaN or Inf has a non-finite mean (as any
    mean), so at most r buckets are non-finite for r such inputs; the rule that follows treats
    them as Byzantine.

    Cost: one read of the input (gathered in cache-sized column blocks) and one write of the
    ceil(n/s) x d output; the input is never modified.

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
           datasets via bucketing", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> out = Bucketing(2, seed=0).pre_aggregate(x)
    >>> out.shape, float(out.mean())  # 2 buckets of 2; the mean of all is kept
    ((2, 2), 3.5)
    >>> bool(np.array_equal(out, Bucketing(2, seed=0).pre_aggregate(x)))
    True
    >>> Bucketing(2, perm=[3, 0, 1, 2]).pre_aggregate(x)  # buckets {3, 0} and {1, 2}
    array([[3., 4.],
           [3., 4.]])
    """

    name = "bucketing"

    def __init__(self, bucket_size: int, *, seed: int | None = None, perm: Sequence[int] | None = None) -> None:
        if isinstance(bucket_size, bool) or not isinstance(bucket_size, (int, np.integer)) or bucket_size < 1:
            raise ConfigurationError(f"Bucketing bucket_size must be an integer >= 1, got {bucket_size!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigurationError(f"Bucketing seed must be None or an integer >= 0, got {seed!r}")
        self.bucket_size = int(bucket_size)
        self.seed = None if seed is None else int(seed)
        if perm is not None:
            try:
                perm = [int(i) for i in perm]
            except (TypeError, ValueError):
                raise ConfigurationError(f"Bucketing perm must be None or a sequence of int indices, got {perm!r}") from None
            if sorted(perm) != list(range(len(perm))):
                raise ConfigurationError(f"Bucketing perm must be a permutation of range({len(perm)}), got {perm!r}")
        self.perm = perm
        self._repr_params = {"bucket_size": self.bucket_size, "seed": self.seed}
        if perm is not None:
            self._repr_params["perm"] = perm

    def permutation(self, n: int) -> np.ndarray:
        """The permutation of ``range(n)`` this call uses (``perm`` when given; fixed for an int seed)."""
        if self.perm is not None:
            if len(self.perm) != int(n):
                raise InputError(f"Bucketing perm has {len(self.perm)} indices but the call has n={int(n)} vectors")
            return np.asarray(self.perm, dtype=np.intp)
        return np.random.default_rng(self.seed).permutation(int(n))

    def transform(self, matrix: Any, xp: Any) -> Any:
        """(n, d) -> (ceil(n / bucket_size), d): bucket means of the permuted rows."""
        perm = self.permutation(matrix.shape[0])
        if xp is not np:
            perm = xp.asarray(perm)
        with np.errstate(over="ignore", invalid="ignore"):
            out = bucket_means(matrix, perm, self.bucket_size, xp)
            if bool(xp.isfinite(out).all()):
                return out
            # a bucket of finite values near the dtype's maximum overflowed: its mean, again from
            # the inputs scaled by an exact power of two (non-finite buckets stay non-finite)
            scale = matrix.dtype.type(2.0 ** -(self.bucket_size.bit_length() + 1))
            again = bucket_means(matrix * scale, perm, self.bucket_size, xp) / scale
        return xp.where(xp.isfinite(out), out, again)
