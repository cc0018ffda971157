r"""FedAvg with Byzantine clients: local SGD on sampled clients, robust aggregation of the updates.

Round :math:`r` (counted from 0), with global parameters :math:`x_r`:

1. a seeded sample :math:`S_r` of the honest clients (a fraction ``participation`` or
   ``clients_per_round`` of them; the sample is a function of ``(seed, r)`` only);
2. each sampled client :math:`i` runs ``local_steps`` SGD steps from :math:`x_r` on its own
   minibatches, :math:`y \leftarrow y - \eta (v + \lambda y)` (``v`` its gradient, with local
   momentum when the node has it, restarted each round), and sends its update
   :math:`u_i = y_K - x_r`;
3. every Byzantine client sends an attack vector computed from the honest updates (attacks that
   read a model and a batch, such as label flipping, run the same local steps on their own
   data with the attack's vector in place of the gradient);
4. the server applies :math:`x_{r+1} = x_r + \eta_s\, F(\mathrm{pre}(u_{S_r}, u_{\mathrm{byz}}))`.

On a pool, each worker holds a group of clients with their data (placed once); a round sends
one task per group that holds sampled clients, and the aggregation runs in one more task.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from byzdask.aggregators.base import Aggregator
from byzdask.data.dataset import Dataset
from byzdask.engine.graph.scheduler import pool_loop, run_coroutine_sync
from byzdask.engine.node.base import evaluate_model
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode
from byzdask.engine.node.training import _as_vector, _check_nodes, robust_aggregate
from byzdask.engine.progress import round_progress
from byzdask.errors import ConfigurationError
from byzdask.models.vectors import set_flat_params
from byzdask.pre_aggregators.base import PreAggregator

__all__ = ["FedAvg", "local_update", "sample_clients"]


def sample_clients(num_clients: int, per_round: int, *, seed: int, round_index: int) -> list[int]:
    """The sorted ids of the clients sampled in round ``round_index`` (without replacement).

    Examples
    --------
    >>> sample_clients(10, 3, seed=0, round_index=4) == sample_clients(10, 3, seed=0, round_index=4)
    True
    >>> sample_clients(5, 5, seed=0, round_index=0)
    [0, 1, 2, 3, 4]
    """
    rng = np.random.default_rng([int(seed), int(round_index), 7])
    return sorted(int(i) for i in rng.choice(int(num_clients), size=int(per_round), replace=False))


def local_update(node: Any, params: torch.Tensor, *, steps: int, lr: float, first_step: int,
                 weight_decay: float = 0.0, direction: Callable[[int], torch.Tensor] | None = None) -> torch.Tensor:
    """``steps`` local SGD steps of ``node`` from ``params`` (minibatches ``first_step...``); returns ``y_K - params``.

    ``direction(step)`` gives the vector of one step at the node's current parameters (default:
    the node's gradient with its momentum, the buffer starting at zero). Pure: the node's step
    counter and buffer are not changed.

    Examples
    --------
    >>> from byzdask.data import load_digits
    >>> from byzdask.models import build_model, get_flat_params
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10)
    >>> node = HonestNode(model, load_digits().train.subset(range(64)))
    >>> x0 = get_flat_params(model)
    >>> u = local_update(node, x0, steps=1, lr=0.1, first_step=0)
    >>> bool(torch.allclose(u, -0.1 * node.gradient_at(x0, step=0)[0]))
    True
    """
    torch.set_num_threads(1)
    y = _as_vector(params).clone()
    buffer = None
    for k in range(int(steps)):
        node.set_params(y)
        if direction is None:
            v, buffer = node.gradient_at(step=first_step + k, buffer=buffer)
        else:
            v = _as_vector(direction(first_step + k))
        if weight_decay:
            v = v + float(weight_decay) * y
        y = y - float(lr) * v
    return y - _as_vector(params)


def _honest_updates(nodes: Sequence[HonestNode], params: torch.Tensor, steps: Sequence[int], local_steps: int,
                    lr: float, weight_decay: float) -> list[torch.Tensor]:
    """Task body: the updates of a group of sampled clients."""
    return [local_update(n, params, steps=local_steps, lr=lr, first_step=s, weight_decay=weight_decay)
            for n, s in zip(nodes, steps)]


def _byzantine_updates(nodes: Sequence[ByzantineNode], honest: list[torch.Tensor], params: torch.Tensor,
                       steps: Sequence[int], round_index: int, local_steps: int, lr: float) -> list[torch.Tensor]:
    out = []
    for node, step in zip(nodes, steps):
        attack = node.attack_for_round(round_index)
        if attack.uses_model_batch:
            def direction(s: int, node: ByzantineNode = node, attack: Any = attack) -> torch.Tensor:
                x, y = node.sample_batch(s)
                return attack.apply(model=node.model, x=x, y=y)
            out.append(local_update(node, params, steps=local_steps, lr=lr, first_step=step, direction=direction))
        else:
            out.append(_as_vector(node.attack_vector(honest_grads=honest, round_index=round_index)))
    return out


def _aggregate_task(groups: Sequence[list[torch.Tensor]], byzantine: Sequence[ByzantineNode], params: torch.Tensor,
                    steps: Sequence[int], round_index: int, local_steps: int, lr: float, aggregator: Aggregator,
                    pre: Sequence[PreAggregator]) -> torch.Tensor:
    torch.set_num_threads(1)
    honest = [u for group in groups for u in group]
    byz = _byzantine_updates(byzantine, honest, params, steps, round_index, local_steps, lr)
    return robust_aggregate(honest + byz, aggregator, pre)


def _place(nodes: list[Any]) -> list[Any]:
    return nodes


class FedAvg:
    """Federated averaging of honest and Byzantine clients with a robust rule, on a pool or in-process.

    See the module docstring for the round. Results do not depend on where tasks ran.

    Parameters
    ----------
    honest_nodes, byzantine_nodes : sequences of HonestNode, ByzantineNode
        Byzantine clients take part in every round.
    aggregator : Aggregator
        The rule; its ``f`` must be tolerated with ``clients_per_round + len(byzantine_nodes)`` inputs.
    pre_aggregator : PreAggregator, sequence of them, or None
    lr : float
        Client learning rate :math:`\\eta`.
    local_steps : int
        SGD steps per sampled client and round, >= 1.
    participation : float
        Share of the honest clients sampled each round, in (0, 1] (ignored when ``clients_per_round`` is given).
    clients_per_round : int, optional
        Number of honest clients sampled each round.
    server_lr : float
        :math:`\\eta_s`.
    weight_decay : float
        Applied in the local steps.
    seed : int
        Seed of the client samples.
    actor_pool : ActorPool, optional
    test_data : Dataset, optional
    timeout : float
        Limit in seconds of one round on a pool.

    Examples
    --------
    >>> from byzdask.aggregators import CoordinateWiseTrimmedMean
    >>> from byzdask.attacks.sign_flip import SignFlipAttack
    >>> from byzdask.data import load_digits, partition_dataset
    >>> from byzdask.engine.node.training import make_honest_nodes
    >>> from byzdask.models import build_model
    >>> split = load_digits(seed=0)
    >>> model = build_model("logreg", input_shape=(64,), num_classes=10, seed=0)
    >>> honest = make_honest_nodes(partition_dataset(split.train, 6, seed=0), model, seed=0)
    >>> fl = FedAvg(honest, [ByzantineNode(SignFlipAttack(), node_id=6)], CoordinateWiseTrimmedMean(f=1),
    ...             lr=0.1, local_steps=3, clients_per_round=4, test_data=split.test)
    >>> fl.run_sync(20, eval_every=20, progress=False)[-1]["accuracy"] > 0.85
    True
    """

    def __init__(self, honest_nodes: Sequence[HonestNode], byzantine_nodes: Sequence[ByzantineNode] = (),
                 aggregator: Aggregator | None = None, pre_aggregator: Any = None, *, lr: float = 0.1,
                 local_steps: int = 1, participation: float = 1.0, clients_per_round: int | None = None,
                 server_lr: float = 1.0, weight_decay: float = 0.0, seed: int = 0, actor_pool: Any = None,
                 test_data: Dataset | None = None, timeout: float = 600.0) -> None:
        from byzdask.engine.parameter_server.ps import _pre_aggregators

        self.honest_nodes, self.byzantine_nodes = _check_nodes(honest_nodes, byzantine_nodes)
        if not isinstance(aggregator, Aggregator):
            raise ConfigurationError(f"aggregator must be an Aggregator, got {type(aggregator).__name__}")
        self.aggregator, self.pre_aggregators = aggregator, _pre_aggregators(pre_aggregator)
        h = len(self.honest_nodes)
        for name, value in (("lr", lr), ("server_lr", server_lr), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if isinstance(local_steps, bool) or not isinstance(local_steps, int) or local_steps < 1:
            raise ConfigurationError(f"local_steps must be an integer >= 1, got {local_steps!r}")
        if clients_per_round is None:
            if isinstance(participation, bool) or not isinstance(participation, (int, float)) \
                    or not 0 < participation <= 1:
                raise ConfigurationError(f"participation must lie in (0, 1], got {participation!r}")
            clients_per_round = max(1, round(float(participation) * h))
        if isinstance(clients_per_round, bool) or not isinstance(clients_per_round, int) \
                or not 1 <= clients_per_round <= h:
            raise ConfigurationError(f"clients_per_round must be an integer in [1, {h}] (the honest clients), "
                                     f"got {clients_per_round!r}")
        self.lr, self.server_lr, self.weight_decay = float(lr), float(server_lr), float(weight_decay)
        self.local_steps, self.clients_per_round, self.seed = local_steps, clients_per_round, int(seed)
        self.pool, self.test_data, self.timeout = actor_pool, test_data, float(timeout)
        self.params = self.honest_nodes[0].params()
        self._eval_model = copy.deepcopy(self.honest_nodes[0].model)
        self.round_index = 0
        self.history: list[dict[str, Any]] = []
        self._placed: list[Any] | None = None
        self._group_of: list[tuple[int, int]] = []

    def _steps(self) -> tuple[list[int], list[int], list[int]]:
        chosen = sample_clients(len(self.honest_nodes), self.clients_per_round, seed=self.seed,
                                round_index=self.round_index)
        honest_steps = [self.honest_nodes[i].step for i in chosen]
        byz_steps = [n.step for n in self.byzantine_nodes]
        return chosen, honest_steps, byz_steps

    def _advance(self, chosen: Sequence[int]) -> None:
        for i in chosen:
            self.honest_nodes[i].step += self.local_steps
        for node in self.byzantine_nodes:
            if node.attack.uses_model_batch:
                node.step += self.local_steps

    def _local(self, chosen: list[int], honest_steps: list[int], byz_steps: list[int]) -> torch.Tensor:
        nodes = [self.honest_nodes[i] for i in chosen]
        honest = _honest_updates(nodes, self.params, honest_steps, self.local_steps, self.lr, self.weight_decay)
        return _aggregate_task([honest], self.byzantine_nodes, self.params, byz_steps, self.round_index,
                               self.local_steps, self.lr, self.aggregator, self.pre_aggregators)

    async def _cluster(self, chosen: list[int], honest_steps: list[int], byz_steps: list[int]) -> torch.Tensor:
        client = self.pool.client
        token = uuid.uuid4().hex[:8]
        if self._placed is None:
            workers = list((await self.pool.refresh_workers()).values())
            g = max(1, min(len(workers), len(self.honest_nodes)))
            groups = [self.honest_nodes[k::g] for k in range(g)]
            self._group_of = [(i % g, i // g) for i in range(len(self.honest_nodes))]
            self._placed = [client.submit(_place, members, key=f"byzdask-fedavg-clients-{k}-{token}", pure=False,
                                          workers=[workers[k % len(workers)]], allow_other_workers=True)
                            for k, members in enumerate(groups)]
            self._placed_byzantine = client.submit(_place, list(self.byzantine_nodes), pure=False,
                                                   key=f"byzdask-fedavg-byzantine-{token}")
        per_group: dict[int, list[tuple[int, int]]] = {}
        for i, step in zip(chosen, honest_steps):
            g, slot = self._group_of[i]
            per_group.setdefault(g, []).append((slot, step))
        futures = [client.submit(_select_and_update, self._placed[g], [s for s, _ in items], [t for _, t in items],
                                 self.params, self.local_steps, self.lr, self.weight_decay,
                                 key=f"byzdask-fedavg-local-{g}-r{self.round_index}-{token}", pure=False)
                   for g, items in sorted(per_group.items())]
        # honest updates in client-id order: groups hold ids g, g+G, ...; reorder in the aggregation task
        order = [(sorted(per_group).index(self._group_of[i][0]),
                  [s for s, _ in per_group[self._group_of[i][0]]].index(self._group_of[i][1])) for i in chosen]
        agg = client.submit(_ordered_aggregate, futures, order, self._placed_byzantine, self.params, byz_steps,
                            self.round_index, self.local_steps, self.lr, self.aggregator, self.pre_aggregators,
                            key=f"byzdask-fedavg-aggregate-r{self.round_index}-{token}", pure=False)
        return await agg

    async def round(self) -> dict[str, Any]:
        """Run one round; returns ``{"round", "clients", "aggregate_norm"}``."""
        chosen, honest_steps, byz_steps = self._steps()
        if self.pool is None:
            aggregate = await asyncio.to_thread(self._local, chosen, honest_steps, byz_steps)
        else:
            try:
                aggregate = await asyncio.wait_for(self._cluster(chosen, honest_steps, byz_steps), self.timeout)
            except TimeoutError as exc:
                raise TimeoutError(f"FedAvg round {self.round_index + 1} did not finish within {self.timeout} s") from exc
        self.params = self.params + self.server_lr * _as_vector(aggregate)
        self._advance(chosen)
        self.round_index += 1
        return {"round": self.round_index, "clients": chosen, "aggregate_norm": float(aggregate.double().norm())}

    def evaluate(self, data: Dataset | None = None) -> tuple[float, float]:
        """``(accuracy, mean loss)`` of the global model on ``data`` (default: the test split)."""
        data = data if data is not None else self.test_data
        if data is None:
            raise ConfigurationError("no test split: pass test_data= to the constructor or data= here")
        set_flat_params(self._eval_model, self.params)
        return evaluate_model(self._eval_model, data.x, data.y, self.honest_nodes[0].loss_fn)

    async def run(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                  progress: bool = True) -> list[dict[str, Any]]:
        """Run ``rounds`` rounds, evaluating every ``eval_every`` rounds and after the last."""
        records: list[dict[str, Any]] = []
        bar = round_progress(rounds, progress, desc="fedavg rounds")
        try:
            for k in range(1, int(rounds) + 1):
                await self.round()
                if self.test_data is not None and (k % eval_every == 0 or k == rounds):
                    accuracy, loss = self.evaluate()
                    record = {"round": self.round_index, "accuracy": accuracy, "loss": loss}
                    records.append(record)
                    self.history.append(record)
                    if callback is not None:
                        callback(record)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return records

    def run_sync(self, rounds: int, *, eval_every: int = 1, callback: Callable[[dict[str, Any]], None] | None = None,
                 progress: bool = True) -> list[dict[str, Any]]:
        """:meth:`run` from synchronous code."""
        return run_coroutine_sync(lambda: self.run(rounds, eval_every=eval_every, callback=callback,
                                                   progress=progress), loop=pool_loop(self.pool))

    async def close(self) -> None:
        """Release this trainer's futures on the pool (the pool stays up)."""
        self._placed = None

    def __repr__(self) -> str:
        return (f"FedAvg({len(self.honest_nodes)} honest ({self.clients_per_round} per round, {self.local_steps} "
                f"local steps), {len(self.byzantine_nodes)} Byzantine, {type(self.aggregator).__name__}, "
                f"round {self.round_index})")


def _select_and_update(members: list[HonestNode], slots: list[int], steps: list[int], params: torch.Tensor,
                       local_steps: int, lr: float, weight_decay: float) -> list[torch.Tensor]:
    """Task body on the worker that holds a group: the updates of its sampled clients."""
    return _honest_updates([members[s] for s in slots], params, steps, local_steps, lr, weight_decay)


def _ordered_aggregate(groups: list[list[torch.Tensor]], order: list[tuple[int, int]], byzantine: list[ByzantineNode],
                       params: torch.Tensor, steps: list[int], round_index: int, local_steps: int, lr: float,
                       aggregator: Aggregator, pre: Sequence[PreAggregator]) -> torch.Tensor:
    honest = [groups[g][k] for g, k in order]
    return _aggregate_task([honest], byzantine, params, steps, round_index, local_steps, lr, aggregator, pre)
