"""All the honest nodes of a round as one batched computation.

When the nodes share one architecture and loss (what :func:`make_honest_nodes
<byzdask.engine.node.training.make_honest_nodes>` builds), :class:`BatchedNodes` computes their
stochastic gradients in one call: the minibatches of every node gathered at once from one
concatenated copy of the shards, then ``torch.func.vmap(torch.func.grad(...))`` over
``functional_call`` of the first node's model. Worker momentum is one ``(h, d)`` buffer update.
The result equals, to float32 rounding, what the nodes compute one by one
(:meth:`HonestNode.gradient_at <byzdask.engine.node.honest.HonestNode.gradient_at>`).

:func:`batched_nodes` decides: it returns None (the trainers then keep the per-node path) for
nodes a user subclassed (their own ``compute_gradient``, ``sample_batch`` or ``gradient_at``),
models of different classes or shapes, models with buffers or dropout, different losses, or
shards smaller than the batch.

Minibatch indices come from :func:`batch_index_block`: a counter-based hash of
``(seed, step, sample)``, so one vectorised call draws a block of rounds for all nodes and
each batch is still a pure function of ``(seed, step)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional

__all__ = ["BatchedNodes", "batch_index_block", "batched_nodes", "byzantine_vectors", "evaluate_params",
           "stack_vectors"]

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
#: Rounds of minibatch indices drawn per call.
BLOCK = 64


def _mix(z: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection of uint64 with good avalanche
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def batch_index_block(sizes: Sequence[int], batch_size: int, seeds: Sequence[int], steps: Any) -> np.ndarray:
    """Sorted minibatch indices of several nodes and steps: shape ``(nodes, steps, k)``.

    Node ``i`` at step ``t`` takes the ``k = min(batch_size, min(sizes))`` samples of its shard
    (``sizes[i]`` samples) with the smallest keys ``hash(seed_i, t, j)``: a uniform draw without
    replacement, a pure function of ``(seed_i, t)``.

    Examples
    --------
    >>> block = batch_index_block([10, 12], 4, [1, 2], [[0, 1], [5, 6]])
    >>> block.shape, bool((block[1, 0] == batch_index_block([12], 4, [2], [[5]])[0, 0]).all())
    ((2, 2, 4), True)
    """
    sizes_a = np.asarray(sizes, dtype=np.int64)
    steps_a = np.asarray(steps, dtype=np.uint64).reshape(len(sizes_a), -1)
    k = int(min(int(batch_size), int(sizes_a.min())))
    with np.errstate(over="ignore"):
        base = _mix(_mix(np.asarray(seeds, dtype=np.uint64)[:, None] + _GOLDEN) ^ (steps_a * _GOLDEN))
        j = np.arange(int(sizes_a.max()), dtype=np.uint64)
        keys = _mix(base[..., None] + (j + np.uint64(1)) * _M1)
    outside = np.arange(keys.shape[-1])[None, None, :] >= sizes_a[:, None, None]
    keys = np.where(outside, np.iinfo(np.uint64).max, keys)
    if k < keys.shape[-1]:
        idx = np.argpartition(keys, k - 1, axis=-1)[..., :k]
    else:
        idx = np.broadcast_to(np.arange(k), keys.shape).copy()
    return np.sort(idx, axis=-1)


def _overrides(node: Any, name: str) -> bool:
    from byzdask.engine.node.base import Node
    from byzdask.engine.node.honest import HonestNode

    base = HonestNode if name in vars(HonestNode) else Node
    return getattr(type(node), name, None) is not getattr(base, name)


def _architecture(model: nn.Module) -> tuple:
    return type(model), tuple((n, tuple(p.shape), p.dtype) for n, p in model.named_parameters())


def batched_nodes(nodes: Sequence[Any]) -> BatchedNodes | None:
    """A :class:`BatchedNodes` for ``nodes``, or None when they must keep the per-node path.

    Examples
    --------
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.engine.node.training import make_honest_nodes
    >>> from byzdask.models import build_model
    >>> nodes = make_honest_nodes(partition_dataset(load_digits().train, 3), build_model("logreg",
    ...                           input_shape=(64,), num_classes=10))
    >>> type(batched_nodes(nodes)).__name__
    'BatchedNodes'
    """
    nodes = list(nodes)
    if not nodes or any(n.model is None or n.data is None for n in nodes):
        return None
    names = ("compute_gradient", "sample_batch") + (("gradient_at", "local_step") if hasattr(nodes[0], "gradient_at") else ())
    if any(_overrides(n, name) for n in nodes for name in names):
        return None
    first = nodes[0]
    arch = _architecture(first.model)
    if any(_architecture(n.model) != arch for n in nodes) or any(True for _ in first.model.buffers()):
        return None
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in first.model.modules()):
        return None
    if len({id(n.loss_fn) for n in nodes}) != 1 or len({n.batch_size for n in nodes}) != 1:
        return None
    if len({tuple(n.data.x.shape[1:]) for n in nodes}) != 1 or min(len(n.data) for n in nodes) < first.batch_size:
        return None
    return BatchedNodes(nodes)


def _dense_layers(model: nn.Module) -> list[nn.Linear] | None:
    """The linear layers of a logistic regression or a Linear/ReLU MLP (None for other models)."""
    from byzdask.models.digits import MLP, LogisticRegression

    if type(model) is LogisticRegression:
        layers: list[nn.Module] = [model.linear]
    elif type(model) is MLP:
        layers = list(model.net)
        if any(type(m) is not (nn.Linear if k % 2 == 0 else nn.ReLU) for k, m in enumerate(layers)):
            return None
        layers = layers[::2]
    else:
        return None
    return layers if all(layer.bias is not None for layer in layers) else None


def _dense_gradients(parts: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-node gradients of the mean cross-entropy of a Linear/ReLU stack, by batched matmuls.

    ``parts`` alternate weights and biases, each ``(*, out, in)`` / ``(*, out)`` with ``*`` empty
    (shared by all nodes) or ``h``; ``x`` is ``(h, k, in)``. Forward, then the closed-form
    backward: :math:`\partial z_L = (\mathrm{softmax}(z_L) - \mathrm{onehot}(y)) / k`.
    """
    weights, biases = parts[0::2], parts[1::2]
    h, k = x.shape[0], x.shape[1]
    acts, zs = [x.reshape(h, k, -1)], []
    for w, b in zip(weights, biases):
        z = torch.matmul(acts[-1], w.transpose(-1, -2)) + (b.unsqueeze(-2) if b.ndim == 2 else b)
        zs.append(z)
        acts.append(torch.relu(z))
    dz = torch.softmax(zs[-1], dim=-1)
    dz.scatter_add_(-1, y.unsqueeze(-1), torch.full(y.shape + (1,), -1.0))
    dz = dz / k
    grads: list[torch.Tensor] = []
    for layer in range(len(weights) - 1, -1, -1):
        grads.append(dz.sum(dim=1))
        grads.append(torch.matmul(dz.transpose(1, 2), acts[layer]).reshape(h, -1))
        if layer:
            dz = torch.matmul(dz, weights[layer]) * (zs[layer - 1] > 0)
    return torch.cat(grads[::-1], dim=1)


def _loss_of(model: nn.Module, names: Sequence[str], loss_fn: Any) -> Any:
    def loss(flat_parts: tuple[torch.Tensor, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, dict(zip(names, flat_parts)), (x,)), y)
    return loss


class BatchedNodes:
    """The stochastic gradients (and momentum vectors) of same-architecture nodes in one call.

    Parameters
    ----------
    nodes : sequence of Node
        Nodes that :func:`batched_nodes` accepts (same model architecture, loss and batch size).

    Examples
    --------
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.engine.node.training import make_honest_nodes
    >>> from byzdask.models import build_model, get_flat_params
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10)
    >>> nodes = make_honest_nodes(partition_dataset(load_digits().train, 3), model, momentum=0.9)
    >>> vectors, buffers = BatchedNodes(nodes).vectors(get_flat_params(model), [0, 0, 0], None)
    >>> one, _ = nodes[1].gradient_at(get_flat_params(model), step=0)
    >>> vectors.shape, bool(torch.allclose(vectors[1], one, atol=1e-6))
    (torch.Size([3, 650]), True)
    """

    def __init__(self, nodes: Sequence[Any]) -> None:
        self.nodes = list(nodes)
        first = self.nodes[0]
        self.model = first.model
        named = list(first.model.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.num_params = sum(self.sizes)
        self.batch_size = first.batch_size
        self.loss_fn = first.loss_fn or functional.cross_entropy
        self.momentum = torch.tensor([[float(getattr(n, "momentum", 0.0))] for n in self.nodes])
        self.uses_momentum = bool((self.momentum > 0).any())
        self.x = torch.cat([n.data.x for n in self.nodes])
        self.y = torch.cat([n.data.y for n in self.nodes])
        lengths = [len(n.data) for n in self.nodes]
        self.offsets = torch.tensor(np.cumsum([0] + lengths[:-1]), dtype=torch.long)[:, None]
        self._lengths = lengths
        self._seeds = [n.seed for n in self.nodes]
        self._block: tuple[np.ndarray, torch.Tensor] | None = None
        #: Linear layers of a logreg / MLP with the default loss: closed-form batched gradients.
        self.dense = _dense_layers(self.model) if first.loss_fn is None else None
        loss = _loss_of(self.model, self.names, self.loss_fn)
        self._shared = vmap(grad(loss), in_dims=(None, 0, 0))
        self._own = vmap(grad(loss), in_dims=(0, 0, 0))
        self.model.train()

    # -- data ------------------------------------------------------------------------------
    def indices(self, steps: Sequence[int]) -> torch.Tensor:
        """Rows of the concatenated shards for each node's minibatch ``steps[i]``: ``(h, k)``."""
        steps_a = np.asarray(steps, dtype=np.int64)
        if self._block is not None:
            start, rows = self._block
            offset = steps_a - start
            if (offset == offset[0]).all() and 0 <= offset[0] < rows.shape[1]:
                return rows[:, int(offset[0])]
        block = steps_a[:, None] + np.arange(BLOCK)[None, :]
        local = torch.from_numpy(batch_index_block(self._lengths, self.batch_size, self._seeds, block))
        rows = local + self.offsets[:, :, None]
        self._block = (steps_a, rows)
        return rows[:, 0]

    def batches(self, steps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatches ``(x, y)`` of every node, shapes ``(h, k, ...)`` and ``(h, k)``."""
        rows = self.indices(steps)
        flat = rows.reshape(-1)
        return self.x.index_select(0, flat).reshape(*rows.shape, *self.x.shape[1:]), self.y.index_select(0, flat).view(rows.shape)

    # -- parameters ------------------------------------------------------------------------
    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Views of a flat vector ``(d,)`` or matrix ``(h, d)`` as the model's parameter shapes."""
        lead = tuple(flat.shape[:-1])
        return tuple(part.reshape(*lead, *shape) for part, shape in zip(flat.split(self.sizes, dim=-1), self.shapes))

    # -- gradients -------------------------------------------------------------------------
    def gradients(self, params: Any, steps: Sequence[int], *, labels: Any = None) -> torch.Tensor:
        """Every node's raw stochastic gradient, ``(h, d)``.

        ``params`` is one vector ``(d,)`` (all nodes at the same point, parameter server) or
        one per node ``(h, d)``; ``labels`` optionally maps the batch labels (label flip).
        """
        params = torch.as_tensor(params, dtype=torch.float32)
        x, y = self.batches(steps)
        if labels is not None:
            y = labels(y)
        if self.dense is not None:
            return _dense_gradients(self.split(params), x, y)
        fn = self._own if params.ndim == 2 else self._shared
        parts = fn(self.split(params), x, y)
        return torch.cat([g.reshape(len(self.nodes), -1) for g in parts], dim=1)

    def vectors(self, params: Any, steps: Sequence[int], buffers: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the nodes send: ``(vectors (h, d), new momentum buffers (h, d) or None)``.

        As :meth:`HonestNode.gradient_at <byzdask.engine.node.honest.HonestNode.gradient_at>`,
        node by node: :math:`m = \\beta m + (1-\\beta) g` (first: :math:`(1-\\beta) g`).
        """
        g = self.gradients(params, steps)
        if not self.uses_momentum:
            return g, None
        beta = self.momentum
        new = (1.0 - beta) * g if buffers is None else beta * buffers + (1.0 - beta) * g
        return new, new

    def node_buffers(self) -> torch.Tensor | None:
        """The nodes' momentum buffers as one ``(h, d)`` tensor (None when none has one yet)."""
        bufs = [getattr(n, "momentum_buffer", None) for n in self.nodes]
        if all(b is None for b in bufs):
            return None
        if self._rows is not None and all(b is r for b, r in zip(bufs, self._rows)):
            return self._buffers
        zero = torch.zeros(self.num_params)
        return torch.stack([zero if b is None else torch.as_tensor(b, dtype=torch.float32) for b in bufs])

    _rows: tuple[torch.Tensor, ...] | None = None
    _buffers: torch.Tensor | None = None

    def record_buffers(self, buffers: torch.Tensor | None) -> None:
        """Give each node its row of ``buffers`` (views, no copy) as its momentum buffer."""
        self._buffers = buffers
        self._rows = None if buffers is None else tuple(buffers.unbind(0))
        for k, node in enumerate(self.nodes):
            node.momentum_buffer = None if buffers is None else self._rows[k]


def evaluate_params(model: nn.Module, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    loss_fn: Any = None) -> tuple[Any, Any]:
    """Accuracy and mean loss of ``model`` at flat ``params`` (``(d,)`` or ``(h, d)``) on ``(x, y)``.

    No parameter is written into the model. For ``(h, d)``, one vectorised pass gives ``h``
    accuracies and losses (numpy arrays); non-finite logits count as wrong predictions.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> acc, loss = evaluate_params(lin, torch.tensor([1.0, 0, 0, 1, 0, 0]), torch.eye(2), torch.tensor([0, 0]))
    >>> float(acc)
    0.5
    """
    loss_fn = loss_fn or functional.cross_entropy
    named = [(n, tuple(p.shape), p.numel()) for n, p in model.named_parameters()]
    params = torch.as_tensor(params, dtype=torch.float32)

    def one(flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = flat.split([s for _, _, s in named])
        logits = functional_call(model, {n: p.reshape(shape) for (n, shape, _), p in zip(named, parts)}, (xb,))
        finite = torch.isfinite(logits).all(dim=1)
        correct = ((logits.argmax(dim=1) == yb) & finite).to(torch.float64).sum()
        return correct, loss_fn(logits, yb).double() * xb.shape[0]

    fn = one if params.ndim == 1 else vmap(one, in_dims=(0, None, None))
    chunk = max(1, 4096 // (1 if params.ndim == 1 else params.shape[0]))  # bounds the activations held
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            sums = [fn(params, x[i:i + chunk], y[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    finally:
        model.train(was)
    acc = sum(c for c, _ in sums) / x.shape[0]
    loss = sum(v for _, v in sums) / x.shape[0]
    if params.ndim == 1:
        return float(acc), float(loss)
    return acc.numpy(), loss.numpy()


def _shared_key(node: Any) -> Any:
    """What makes two Byzantine nodes send the same vector (None: the node's vector is its own)."""
    from byzdask.engine.node.byzantine import ByzantineNode

    attack = node.attack
    if type(node).attack_vector is not ByzantineNode.attack_vector or hasattr(attack, "seed") \
            or attack.uses_model_batch or (attack.uses_base_grad and node.model is not None and node.data is not None):
        return None
    return type(attack), repr(attack)


def byzantine_vectors(nodes: Sequence[Any], honest: Sequence[Any], params: Any, round_index: int) -> list[Any]:
    """The Byzantine nodes' vectors of one round, in node order; each node's step is advanced.

    Nodes whose attacks are alike and read neither their own data nor a seed (sign flip and
    "a little" on the honest vectors, inf, empire...) send the same vector: it is computed once.

    Examples
    --------
    >>> from byzdask.attacks.inf import InfAttack
    >>> from byzdask.engine.node.byzantine import ByzantineNode
    >>> [v.tolist() for v in byzantine_vectors([ByzantineNode(InfAttack())] * 2, [torch.zeros(1)], None, 0)]
    [[inf], [inf]]
    """
    from byzdask.engine.parameter_server.ps import byzantine_step

    out: list[Any] = []
    done: dict[Any, Any] = {}
    for node in nodes:
        key = _shared_key(node)
        if key is not None and key in done:
            out.append(done[key])
            continue
        vector, node.step = byzantine_step(node, params, node.step, round_index, honest)
        out.append(vector)
        if key is not None:
            done[key] = vector
    return out


def stack_vectors(honest: Sequence[Any], byzantine: Sequence[Any]) -> Any:
    """One ``(n, d)`` float32 tensor of the round's vectors (honest first), or the plain list
    when they are not all flat float32 torch vectors of one length.

    Examples
    --------
    >>> stack_vectors([torch.zeros(2)], [torch.ones(2)]).tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    """
    if isinstance(honest, torch.Tensor) and honest.ndim == 2 and honest.dtype == torch.float32 and all(
            isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.shape == honest.shape[1:] for v in byzantine):
        return torch.cat([honest, *(v.unsqueeze(0) for v in byzantine)]) if byzantine else honest
    vectors = [*honest, *byzantine]
    if all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.ndim == 1 for v in vectors) \
            and len({v.shape[0] for v in vectors}) == 1:
        return torch.stack(vectors)
    return vectors
