"""Split a training set across honest nodes: IID, Dirichlet per class, gamma-similarity, or extreme.

The four partitions of ByzFL's benchmark. Each function returns one index array per node;
together they cover every sample exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from byzdask.data.dataset import Dataset
from byzdask.errors import ConfigurationError, InputError

__all__ = ["PARTITIONS", "dirichlet_partition", "extreme_partition", "gamma_partition", "iid_partition",
           "label_skew", "partition_dataset", "skew_summary"]

PARTITIONS = ("iid", "dirichlet", "gamma", "extreme")


def _check_nodes(num_nodes: Any, num_samples: int, min_size: int) -> int:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) or num_nodes < 1:
        raise ConfigurationError(f"num_nodes must be a positive integer, got {num_nodes!r}")
    if num_samples < num_nodes * min_size:
        raise InputError(
            f"{num_samples} samples cannot give {num_nodes} nodes at least {min_size} each "
            f"(need {num_nodes * min_size}); use fewer nodes or a smaller min_size"
        )
    return int(num_nodes)


def iid_partition(num_samples: int, num_nodes: int, *, seed: int = 0) -> list[np.ndarray]:
    """Shuffle the sample indices with ``seed`` and cut them into near-equal shards.

    Shard sizes differ by at most one. Cost: O(num_samples).

    Parameters
    ----------
    num_samples : int
        Number of samples to split.
    num_nodes : int
        Number of shards, at most ``num_samples``.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    list of numpy.ndarray
        ``num_nodes`` sorted int64 index arrays that cover ``range(num_samples)`` exactly once.

    Examples
    --------
    >>> [len(p) for p in iid_partition(10, 3, seed=0)]
    [4, 3, 3]
    """
    num_nodes = _check_nodes(num_nodes, int(num_samples), 1)
    perm = np.random.default_rng(seed).permutation(int(num_samples))
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, num_nodes)]


def dirichlet_partition(labels: Any, num_nodes: int, *, alpha: float, seed: int = 0,
                        min_size: int = 5) -> list[np.ndarray]:
    r"""Non-IID shards: each class is split across nodes in proportions drawn from Dir(alpha).

    For every class :math:`c`, draw :math:`p_c \sim \mathrm{Dir}(\alpha \mathbf{1}_{K})` over the
    :math:`K` nodes and give node :math:`k` a share :math:`p_{c,k}` of the (shuffled) samples
    of class :math:`c`. Small ``alpha`` (0.1) gives each node few classes; large ``alpha``
    (100) is close to IID (Hsu, Qi and Brown, 2019, "Measuring the effects of non-identical
    data distribution for federated visual classification").

    **Minimum size rule.** After the draw, while some node holds fewer than ``min_size``
    samples, one sample chosen at random (with ``seed``) moves to it from the node that holds
    the most. The result is deterministic for a seed and always terminates, since
    ``len(labels) >= num_nodes * min_size`` is required.

    Cost: O(num_classes * num_nodes + len(labels)).

    Parameters
    ----------
    labels : array-like of int
        The class of every sample.
    num_nodes : int
        Number of shards.
    alpha : float
        Concentration, > 0.
    seed : int
        Seed of the draws.
    min_size : int
        Fewest samples a node may hold, >= 1.

    Returns
    -------
    list of numpy.ndarray
        ``num_nodes`` sorted int64 index arrays that cover every sample exactly once.

    Raises
    ------
    ConfigurationError
        For ``alpha <= 0``, ``min_size < 1`` or a bad ``num_nodes``.
    InputError
        When there are fewer than ``num_nodes * min_size`` samples.

    Examples
    --------
    >>> labels = np.repeat(np.arange(4), 25)
    >>> parts = dirichlet_partition(labels, 4, alpha=0.1, seed=0)
    >>> sorted(np.concatenate(parts).tolist()) == list(range(100)), min(len(p) for p in parts) >= 5
    (True, True)
    """
    if not np.isfinite(alpha) or float(alpha) <= 0:
        raise ConfigurationError(f"alpha must be a positive number, got {alpha!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise ConfigurationError(f"min_size must be a positive integer, got {min_size!r}")
    labels = _check_labels(labels)
    num_nodes = _check_nodes(num_nodes, labels.size, int(min_size))
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(num_nodes)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        share = rng.dirichlet(np.full(num_nodes, float(alpha)))
        cuts = np.round(np.cumsum(share)[:-1] * members.size).astype(int)
        for k, piece in enumerate(np.split(members, cuts)):
            shards[k].extend(piece.tolist())
    sizes = np.array([len(s) for s in shards])
    while sizes.min() < min_size:
        poor, rich = int(np.argmin(sizes)), int(np.argmax(sizes))
        moved = shards[rich].pop(int(rng.integers(len(shards[rich]))))
        shards[poor].append(moved)
        sizes[poor] += 1
        sizes[rich] -= 1
    return [np.sort(np.asarray(s, dtype=np.int64)) for s in shards]


def _check_labels(labels: Any) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a non-empty 1-D integer array, got dtype {labels.dtype} shape {labels.shape}")
    return labels


def gamma_partition(labels: Any, num_nodes: int, *, gamma: float, seed: int = 0) -> list[np.ndarray]:
    r"""Gamma-similarity shards: a fraction ``gamma`` of the data dealt IID, the rest sorted by label.

    The samples are shuffled with ``seed``; the first :math:`\lfloor \gamma n \rfloor` are cut
    into near-equal IID pieces, the others are sorted by label (ties in shuffled order) and cut
    into contiguous near-equal pieces, as in :func:`extreme_partition`; node :math:`k` gets
    IID piece :math:`k` and sorted piece :math:`k`. ``gamma=1`` is IID, ``gamma=0`` is extreme
    (the partition of ByzFL's benchmark, ``gamma_similarity_niid``; Allouah et al., AISTATS 2023).

    Cost: O(n log n).

    Parameters
    ----------
    labels : array-like of int
        The class of every sample.
    num_nodes : int
        Number of shards, at most ``len(labels)``.
    gamma : float
        Share of the samples dealt IID, in [0, 1].
    seed : int
        Seed of the shuffle.

    Returns
    -------
    list of numpy.ndarray
        ``num_nodes`` sorted int64 index arrays that cover every sample exactly once.

    Examples
    --------
    >>> labels = np.repeat(np.arange(4), 25)
    >>> parts = gamma_partition(labels, 4, gamma=0.0, seed=0)
    >>> [sorted(set(labels[p].tolist())) for p in parts]
    [[0], [1], [2], [3]]
    >>> sorted(np.concatenate(gamma_partition(labels, 4, gamma=0.5)).tolist()) == list(range(100))
    True
    """
    ok = not isinstance(gamma, bool) and isinstance(gamma, (int, float, np.integer, np.floating))
    if not ok or not 0.0 <= float(gamma) <= 1.0:
        raise ConfigurationError(f"gamma must be a number in [0, 1] (1 = IID, 0 = sorted by label), got {gamma!r}")
    labels = _check_labels(labels)
    num_nodes = _check_nodes(num_nodes, labels.size, 1)
    perm = np.random.default_rng(seed).permutation(labels.size)
    cut = int(np.floor(float(gamma) * labels.size))
    iid, rest = perm[:cut], perm[cut:]
    rest = rest[np.argsort(labels[rest], kind="stable")]
    return [np.sort(np.concatenate([a, b])).astype(np.int64)
            for a, b in zip(np.array_split(iid, num_nodes), np.array_split(rest, num_nodes))]


def extreme_partition(labels: Any, num_nodes: int, *, seed: int = 0) -> list[np.ndarray]:
    """Extreme non-IID shards: the samples sorted by label and cut into contiguous near-equal pieces.

    With ``num_nodes`` equal to the number of classes and balanced classes, each node holds
    about one class. Ties are broken by a shuffle with ``seed``. Equal to
    :func:`gamma_partition` with ``gamma=0``.

    Examples
    --------
    >>> labels = np.array([1, 0, 1, 0, 2, 2])
    >>> [labels[p].tolist() for p in extreme_partition(labels, 3)]
    [[0, 0], [1, 1], [2, 2]]
    """
    return gamma_partition(labels, num_nodes, gamma=0.0, seed=seed)


def partition_dataset(dataset: Dataset, num_nodes: int, *, kind: str = "iid", alpha: float = 0.5,
                      gamma: float = 0.5, seed: int = 0, min_size: int = 5) -> list[Dataset]:
    """Split ``dataset`` into ``num_nodes`` shards with one of the partitions of :data:`PARTITIONS`.

    Parameters
    ----------
    dataset : Dataset
        The training split.
    num_nodes : int
        Number of honest nodes.
    kind : {"iid", "dirichlet", "gamma", "extreme"}
        The partition (:func:`iid_partition`, :func:`dirichlet_partition`,
        :func:`gamma_partition`, :func:`extreme_partition`).
    alpha, min_size : float, int
        Used by ``"dirichlet"`` only.
    gamma : float
        Used by ``"gamma"`` only.
    seed : int
        Seed of the partition.

    Returns
    -------
    list of Dataset

    Examples
    --------
    >>> from byzdask.data import load_digits
    >>> shards = partition_dataset(load_digits().train, 10, kind="dirichlet", alpha=0.5, seed=1)
    >>> sum(len(s) for s in shards)
    1437
    """
    if kind not in PARTITIONS:
        raise ConfigurationError(f"kind must be one of {PARTITIONS}, got {kind!r}")
    if kind == "iid":
        parts = iid_partition(len(dataset), num_nodes, seed=seed)
    elif kind == "dirichlet":
        parts = dirichlet_partition(dataset.y.numpy(), num_nodes, alpha=alpha, seed=seed, min_size=min_size)
    elif kind == "gamma":
        parts = gamma_partition(dataset.y.numpy(), num_nodes, gamma=gamma, seed=seed)
    else:
        parts = extreme_partition(dataset.y.numpy(), num_nodes, seed=seed)
    return [dataset.subset(p) for p in parts]


def label_skew(shards: Sequence[Dataset]) -> float:
    r"""Mean total-variation distance between each shard's label distribution and the pooled one.

    :math:`\frac{1}{K}\sum_k \frac12 \lVert q_k - q \rVert_1`, in [0, 1): 0 for identical
    label mixes, near 1 when every shard holds one class of many.

    Examples
    --------
    >>> import torch
    >>> a = Dataset(torch.zeros(2, 1), torch.tensor([0, 0]), 2, (1,))
    >>> b = Dataset(torch.zeros(2, 1), torch.tensor([1, 1]), 2, (1,))
    >>> label_skew([a, b])
    0.5
    """
    if not shards:
        raise InputError("label_skew needs at least one shard")
    counts = np.stack([s.class_counts() for s in shards]).astype(np.float64)
    pooled = counts.sum(axis=0) / counts.sum()
    per_node = counts / counts.sum(axis=1, keepdims=True)
    return float(np.mean(0.5 * np.abs(per_node - pooled).sum(axis=1)))


def skew_summary(shards: Sequence[Dataset]) -> str:
    """One line on the label skew of a partition: the :func:`label_skew`, and classes per shard.

    Examples
    --------
    >>> import torch
    >>> a = Dataset(torch.zeros(2, 1), torch.tensor([0, 0]), 2, (1,))
    >>> b = Dataset(torch.zeros(2, 1), torch.tensor([0, 1]), 2, (1,))
    >>> skew_summary([a, b])
    'label skew 0.250 (mean TV distance to the pooled labels); classes per shard min 1 mean 1.5 max 2; shard sizes 2..2'
    """
    skew = label_skew(shards)
    present = np.array([int((s.class_counts() > 0).sum()) for s in shards])
    sizes = [len(s) for s in shards]
    return (f"label skew {skew:.3f} (mean TV distance to the pooled labels); classes per shard min {present.min()} "
            f"mean {present.mean():.1f} max {present.max()}; shard sizes {min(sizes)}..{max(sizes)}")
