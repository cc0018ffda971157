"""Fang et al.'s full-knowledge attacks on trimmed mean / median and on Krum."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from byzdask.aggregators.base import check_f
from byzdask.aggregators.geometric_wise.krum import krum_scores
from byzdask.attacks._common import check_real, honest_batch
from byzdask.attacks.base import Attack
from byzdask.errors import ConfigurationError, InputError

__all__ = ["FangAttack"]

TARGETS = ("trimmed_mean", "median", "krum")


class FangAttack(Attack):
    r"""Fang et al.'s full-knowledge local model poisoning, in gradient form.

    With :math:`s = \operatorname{sign}(\bar g)` the direction of the honest mean gradient
    (the model moves along :math:`-s`), the Byzantine nodes push the aggregate the other way.

    ``target="trimmed_mean"`` or ``"median"`` (the full-knowledge trimmed-mean attack of [1]_, also used against the median): per
    coordinate j, with :math:`g^{\min}_j, g^{\max}_j` the honest extremes and b = ``b``,

    .. math::

        b_j \sim \begin{cases}
        U[g^{\min}_j / b,\; g^{\min}_j] & s_j > 0,\ g^{\min}_j > 0 \\
        U[b\, g^{\min}_j,\; g^{\min}_j] & s_j > 0,\ g^{\min}_j \le 0 \\
        U[g^{\max}_j,\; b\, g^{\max}_j] & s_j \le 0,\ g^{\max}_j > 0 \\
        U[g^{\max}_j,\; g^{\max}_j / b] & s_j \le 0,\ g^{\max}_j \le 0
        \end{cases}

    drawn with ``numpy.random.default_rng(seed)`` (in training, a fresh seed per node and round,
    see :meth:`~byzdask.engine.node.byzantine.ByzantineNode.attack_for_round`).

    ``target="krum"`` (the full-knowledge Krum attack of [1]_): all f Byzantine nodes send :math:`-\lambda s`, the
    gradient of Fang's model :math:`w_{Re} - \lambda s` (the reference :math:`w_{Re}` is the
    model before the round, i.e. the zero gradient), with the largest
    :math:`\lambda = \lambda_0 / 2^k` for which Krum (with f, byzdask's
    :class:`~byzdask.aggregators.Krum` scores: n - f - 1 neighbours) over the h honest and f
    Byzantine vectors scores a Byzantine vector strictly lowest, starting from Fang's bound

    .. math::

        \lambda_0 = \frac{1}{(h - f - 1)\sqrt d} \min_{i} \sum_{l \in \Gamma_i} \|g_l - g_i\|_2
        + \frac{1}{\sqrt d} \max_i \|g_i\|_2

    (:math:`\Gamma_i` the h - f - 1 honest vectors nearest to :math:`g_i`). The halving stops
    below :math:`10^{-5} \lambda_0`; then that last lambda is sent.

    Parameters
    ----------
    f : int
        The number of Byzantine nodes (>= 1 for ``"krum"``).
    target : {"trimmed_mean", "median", "krum"}, default "trimmed_mean"
    b : float, default 2.0
        The spread factor of the trimmed-mean attack (> 1).
    seed : int or None, keyword-only
        Seed of the trimmed-mean samples (None: fresh OS entropy per call).

    Notes
    -----
    Choices the paper leaves open for gradients: s is the sign of the honest mean gradient;
    :math:`w_{Re}` maps to the zero gradient; Fang's other Byzantine models are copies of the
    first (no small perturbations); a coordinate with :math:`s_j = 0` is pushed up.

    Preconditions: at least one honest vector on the host; for ``"krum"``, h >= f + 3 (Krum
    over h + f vectors).

    Cost: trimmed mean O(h d); Krum one h x h Gram matrix and at most 17 Krum scorings of
    (h + f) vectors (O((h + f)^2 d) each).

    References
    ----------
    .. [1] M. Fang, X. Cao, J. Jia, N. Gong, "Local model poisoning attacks to Byzantine-robust
           federated learning", USENIX Security 2020.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[1.0, -1.0], [2.0, -3.0], [3.0, -2.0]])  # s = (+, -)
    >>> out = FangAttack(f=1, seed=0).apply(honest_grads=g)
    >>> bool(0.5 <= out[0] <= 1.0), bool(-1.0 <= out[1] <= -0.5)
    (True, True)
    """

    name = "fang"
    uses_honest_grads = True

    def __init__(self, f: int, target: str = "trimmed_mean", b: float = 2.0, *, seed: int | None = None) -> None:
        self.f = check_f(f)
        if target not in TARGETS:
            raise ConfigurationError(f"FangAttack: target must be one of {TARGETS}, got {target!r}")
        if target == "krum" and self.f < 1:
            raise ConfigurationError(f"FangAttack(target='krum') needs f >= 1, got f={f!r}")
        self.target = target
        self.b = check_real(b, "b", "FangAttack")
        if self.b <= 1:
            raise ConfigurationError(f"FangAttack: b must be > 1, got {b!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigurationError(f"FangAttack: seed must be None or an integer >= 0, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._repr_params = {"f": self.f, "target": target, "b": self.b, "seed": self.seed}

    def _trimmed(self, g: np.ndarray) -> np.ndarray:
        s = np.sign(g.mean(axis=0))
        lo, hi = g.min(axis=0), g.max(axis=0)
        b = self.b
        down = s > 0
        a = np.where(down, np.where(lo > 0, lo / b, lo * b), hi)
        c = np.where(down, lo, np.where(hi > 0, hi * b, hi / b))
        u = np.random.default_rng(self.seed).random(g.shape[1])
        return a + u * (c - a)

    def lambda_bound(self, g: np.ndarray) -> float:
        """Fang's upper bound :math:`\\lambda_0` on the honest (h, d) matrix ``g``."""
        h, d = g.shape
        k = h - self.f - 1
        sq = (g * g).sum(axis=1)
        dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (g @ g.T), 0.0))
        np.fill_diagonal(dist, np.inf)
        near = np.sort(dist, axis=1)[:, :k].sum(axis=1).min()
        return float(near / (k * math.sqrt(d)) + np.sqrt(sq).max() / math.sqrt(d))

    def _krum(self, g: np.ndarray) -> np.ndarray:
        h = g.shape[0]
        if h < self.f + 3:
            raise InputError(f"FangAttack(target='krum') needs h >= f + 3 honest vectors for Krum, got h={h} "
                             f"with f={self.f}")
        s = np.sign(g.mean(axis=0))
        lam0 = self.lambda_bound(g)
        lam = lam0
        while lam >= 1e-5 * lam0 and lam > 0:
            v = np.vstack([g, np.broadcast_to(-lam * s, (self.f, g.shape[1]))])
            scores = krum_scores(v @ v.T, v.shape[0], self.f)
            if scores[h:].min() < scores[:h].min():
                break
            lam /= 2
        return -lam * s

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return the Byzantine vector, in the family, dtype and shape of ``honest_grads``."""
        batch = honest_batch(honest_grads, "FangAttack")
        g = batch.matrix
        if batch.xp is not np:
            g = batch.xp.asnumpy(g)
        g = g.astype(np.float64)
        out = self._krum(g) if self.target == "krum" else self._trimmed(g)
        return batch.restore(batch.xp.asarray(out.astype(batch.matrix.dtype)))
