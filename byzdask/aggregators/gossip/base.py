"""Base class of the robust gossip rules, and the Metropolis mixing weights of a topology."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from byzdask.errors import InputError
from byzdask.kernels.arrays import Batch, as_batch, finite_rows
from byzdask.kernels.prepro import row_norms
from byzdask.kernels.selection import to_host

__all__ = ["GossipRule", "Neighbourhood", "metropolis_weights"]


def metropolis_weights(graph: nx.Graph) -> np.ndarray:
    """The Metropolis-Hastings mixing matrix of an undirected graph (directed edges count both ways).

    .. math::

        W_{ij} = \\frac{1}{1 + \\max(d_i, d_j)} \\ \\text{for each edge } \\{i, j\\}, \\qquad
        W_{ii} = 1 - \\sum_{j \\ne i} W_{ij},

    with :math:`d_i` the degree of node i: symmetric and doubly stochastic (Xiao, Boyd, Kim,
    "Distributed average consensus with least-mean-square deviation", 2007). Rows follow the
    order of ``sorted(graph.nodes)``; self-loops are ignored.

    Examples
    --------
    >>> metropolis_weights(nx.path_graph(3)).round(3).tolist()
    [[0.667, 0.333, 0.0], [0.333, 0.333, 0.333], [0.0, 0.333, 0.667]]
    """
    g = nx.Graph(graph.to_undirected() if graph.is_directed() else graph)
    g.remove_edges_from(nx.selfloop_edges(g))
    nodes = sorted(g.nodes)
    index = {v: k for k, v in enumerate(nodes)}
    w = np.zeros((len(nodes), len(nodes)))
    for u, v in g.edges:
        w[index[u], index[v]] = w[index[v], index[u]] = 1.0 / (1.0 + max(g.degree[u], g.degree[v]))
    w[np.diag_indices_from(w)] = 1.0 - w.sum(axis=1)
    return w


@dataclass
class Neighbourhood:
    """A node's view, ready for a rule: differences to its neighbours and their weights (host float64)."""

    batch: Batch  # the node's own vector (row 0) and its neighbours' (rows 1..k)
    diffs: Any  # (k, d) x_j - x_i in the inputs' namespace; rows of non-finite neighbours zeroed
    weights: np.ndarray  # (k,) W_ij
    self_weight: float  # W_ii
    finite: np.ndarray  # (k,) bool: the neighbour's vector holds only finite values
    norms: np.ndarray  # (k,) ||x_j - x_i|| (0 for non-finite neighbours)


class GossipRule:
    """A robust gossip step: from a node's vector, its neighbours' and the mixing weights, a move.

    Call :meth:`step` with the node's own vector ``x_i``, its k neighbours' vectors (a sequence or
    one stacked array, numpy / torch / cupy like ``x_i``) and the k weights :math:`W_{ij}`; the
    result has the family, dtype, device and shape of ``x_i``, and the node's next vector is
    ``x_i + step``. :meth:`mix` returns that sum.
    """

    name = "gossip"

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "_repr_params", {}).items())
        return f"{type(self).__name__}({params})"

    def step(self, own: Any, neighbours: Any, weights: Sequence[float], *, self_weight: float | None = None) -> Any:
        """The gossip step of node i (``self_weight`` W_ii defaults to 1 - sum(weights))."""
        hood = self.prepare(own, neighbours, weights, self_weight)
        return hood.batch.restore(self.step_matrix(hood))

    def mix(self, own: Any, neighbours: Any, weights: Sequence[float], *, self_weight: float | None = None) -> Any:
        """``own + step(own, neighbours, weights)``: the node's vector after one gossip round."""
        hood = self.prepare(own, neighbours, weights, self_weight)
        return hood.batch.restore(hood.batch.matrix[0] + self.step_matrix(hood))

    def __call__(self, own: Any, neighbours: Any, weights: Sequence[float], **kwargs: Any) -> Any:
        return self.step(own, neighbours, weights, **kwargs)

    def step_matrix(self, hood: Neighbourhood) -> Any:
        """The rule on prepared inputs: a (d,) vector in the inputs' namespace."""
        raise NotImplementedError

    def prepare(self, own: Any, neighbours: Any, weights: Sequence[float], self_weight: float | None) -> Neighbourhood:
        """Stack the inputs, check the weights, form the differences to the neighbours.

        Raises
        ------
        InputError
            A weight that is negative or not finite, a number of weights other than the number of
            neighbours, or a non-finite own vector.
        """
        vectors = [own, *list(neighbours)]
        batch = as_batch(vectors, what="gossip inputs")
        xp, x = batch.xp, batch.matrix
        k = x.shape[0] - 1
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != k:
            raise InputError(f"expected one weight per neighbour ({k}), got {w.shape[0]} weights")
        if not np.isfinite(w).all() or (w < 0).any():
            raise InputError(f"mixing weights must be finite and >= 0, got {w.tolist()}")
        sw = 1.0 - float(w.sum()) if self_weight is None else float(self_weight)
        if not np.isfinite(sw) or sw < -1e-12:  # weights that sum to one may round past it
            raise InputError(f"the node's own weight must be finite and >= 0 (1 - sum of the weights by default), "
                             f"got {sw:.6g}")
        sw = max(sw, 0.0)
        ok = to_host(finite_rows(x, xp)).astype(bool)
        if not ok[0]:
            raise InputError("the node's own vector holds NaN or Inf")
        finite = ok[1:]
        diffs = x[1:] - x[0]
        if not finite.all():
            diffs[~finite if xp is np else xp.asarray(~finite)] = 0
        norms = to_host(row_norms(diffs, xp)) if k else np.zeros(0)
        return Neighbourhood(batch=batch, diffs=diffs, weights=w, self_weight=sw, finite=finite, norms=norms)


def clipped_step(hood: Neighbourhood, tau: float) -> Any:
    """``sum_j W_ij clip(x_j - x_i, tau)`` over the finite neighbours."""
    xp = hood.batch.xp
    scale = np.divide(tau, hood.norms, out=np.ones_like(hood.norms), where=hood.norms > tau)
    coeffs = np.where(hood.finite, hood.weights * scale, 0.0)
    if coeffs.size == 0:
        return xp.zeros(hood.batch.d, dtype=hood.batch.matrix.dtype)
    c = coeffs.astype(hood.batch.matrix.dtype)
    return (c if xp is np else xp.asarray(c)) @ hood.diffs
