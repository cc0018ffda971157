"""One training run from plain options: what ``byzdask train`` does.

:class:`TrainConfig` holds the options (short names from :mod:`byzdask.registry`);
:func:`build_job` turns them into data, nodes and rules; :func:`run_training` starts the
cluster, trains with :class:`~byzdask.engine.parameter_server.ps.ParameterServer` or
:class:`~byzdask.engine.peer_to_peer.train.PeerToPeer`, closes the cluster and returns the
configuration, the history and the final accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from byzdask.errors import ConfigurationError, ToleranceError

__all__ = ["CLUSTERS", "TrainConfig", "build_job", "make_pool", "make_trainer", "parse_topology", "run_training"]

logger = logging.getLogger(__name__)

#: Names ``--cluster`` takes besides a scheduler address and the dask-jobqueue systems.
CLUSTERS = ("local", "thread", "none")
_JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
             "oar": "OARCluster", "htcondor": "HTCondorCluster", "moab": "MoabCluster"}


@dataclass
class TrainConfig:
    """Options of one run (the ``byzdask train`` options, with the same defaults).

    ``f`` (given to every rule and pre-aggregator that takes one) defaults to ``byzantine``.
    ``cluster``: ``"local"`` (worker processes started and closed here), ``"thread"``
    (in-process workers), ``"none"`` (no Dask cluster), a scheduler address
    (``tcp://host:port``), or a dask-jobqueue system (``slurm``, ``pbs``, ``sge``, ``lsf``,
    ``oar``, ``htcondor``, ``moab``; configured through dask's ``jobqueue`` settings).

    Examples
    --------
    >>> TrainConfig(byzantine=2).resolved_f()
    2
    """

    mode: str = "ps"
    aggregator: str = "cwtm"
    pre_aggregators: tuple[str, ...] = ()
    attack: str = "little"
    honest: int = 10
    byzantine: int = 3
    f: int | None = None
    rounds: int = 30
    lr: float = 0.5
    momentum: float = 0.9
    batch_size: int = 32
    weight_decay: float = 0.0
    partition: str = "iid"
    alpha: float = 0.5
    gamma: float = 0.5
    topology: str = "complete"
    model: str = "logreg"
    dataset: str = "digits"
    data_dir: str | None = None
    seed: int = 0
    cluster: str = "local"
    workers: int = 2
    eval_every: int = 5
    tls: bool = False
    aggregator_kwargs: dict[str, Any] = field(default_factory=dict)
    attack_kwargs: dict[str, Any] = field(default_factory=dict)
    # -- protocol (mode "ps"): dsgd (one gradient per node and round) or fedavg ---------------
    protocol: str = "dsgd"
    local_steps: int = 1
    participation: float = 1.0
    clients_per_round: int | None = None
    server_lr: float = 1.0

    def resolved_f(self) -> int:
        """The ``f`` given to the rules: ``f`` when set, else the number of Byzantine nodes."""
        return self.byzantine if self.f is None else self.f

    def as_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values."""
        out = dataclasses.asdict(self)
        out["pre_aggregators"] = list(self.pre_aggregators)
        out["f"] = self.resolved_f()
        return out


def _check_numbers(config: TrainConfig) -> None:
    """lr, momentum, weight decay and f: finite numbers in range, named when they are not."""
    import math

    from byzdask.aggregators.base import check_f

    for name, positive in (("lr", True), ("weight_decay", False), ("momentum", False)):
        value = getattr(config, name)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        ok = ok and (value > 0 if positive else value >= 0)
        if name == "momentum":
            ok = ok and value < 1
        if not ok:
            want = {"lr": "a finite number > 0", "weight_decay": "a finite number >= 0",
                    "momentum": "a finite number in [0, 1)"}[name]
            raise ConfigurationError(f"{name} must be {want}, got {value!r}")
    if config.f is not None:
        check_f(config.f)


def parse_topology(spec: str, n: int, byzantine: Sequence[int], *, seed: int = 0) -> Any:
    """A :class:`~byzdask.engine.peer_to_peer.topology.Topology` from ``"complete"``, ``"ring[:k]"``,
    ``"kregular:k"``, ``"erdos-renyi:p"`` or ``"torus:RxC"``.

    Examples
    --------
    >>> parse_topology("ring:2", 6, [5]).n
    6
    """
    from byzdask.engine.peer_to_peer.topology import Topology

    name, _, arg = spec.partition(":")
    try:
        if name == "complete":
            return Topology.complete(n, byzantine=byzantine)
        if name == "ring":
            return Topology.ring(n, int(arg or 1), byzantine=byzantine)
        if name in ("kregular", "k-regular"):
            return Topology.k_regular(n, int(arg), seed=seed, byzantine=byzantine)
        if name in ("erdos-renyi", "er"):
            return Topology.erdos_renyi(n, float(arg), seed=seed, byzantine=byzantine)
        if name == "torus":
            rows, _, cols = arg.partition("x")
            return Topology.torus(int(rows), int(cols), byzantine=byzantine)
    except ValueError as exc:
        raise ConfigurationError(f"bad topology {spec!r}: {exc}") from exc
    raise ConfigurationError(
        f"unknown topology {spec!r}; use complete, ring[:k], kregular:k, erdos-renyi:p or torus:RxC"
    )


def _check_neighbourhoods(config: TrainConfig, aggregator: Any, n: int) -> None:
    """Peer-to-peer: every honest node aggregates its own vector and its in-neighbours'; refuse,
    before any data or cluster, a topology in which some node's neighbourhood cannot take f."""
    if aggregator.f is None:
        return
    topology = parse_topology(config.topology, n, list(range(config.honest, n)), seed=config.seed)
    for i in range(config.honest):
        m = 1 + topology.in_degree(i)
        if aggregator.f > aggregator.max_f(m):
            raise ToleranceError(
                f"topology {config.topology!r}: node {i} aggregates {m} vectors (itself and {m - 1} in-neighbours), "
                f"and {type(aggregator).__name__} with f={aggregator.f} needs n >= {aggregator.min_n(aggregator.f)} "
                f"(with {m} it tolerates at most f={aggregator.max_f(m)}); use a denser topology "
                f"(e.g. ring:k with larger k, or complete) or a smaller -f"
            )


def build_job(config: TrainConfig) -> dict[str, Any]:
    """Data, nodes, rule, pre-aggregators and attack of a run (nothing runs yet).

    Honest node ``i`` gets shard ``i`` of the training split; Byzantine nodes get a copy of the
    model and, for attacks that read a batch (``labelflip``), a copy of an honest shard.

    Examples
    --------
    >>> job = build_job(TrainConfig(honest=4, byzantine=1, attack="signflip"))
    >>> len(job["honest"]), len(job["byzantine"]), type(job["aggregator"]).__name__
    (4, 1, 'CoordinateWiseTrimmedMean')
    """
    from byzdask.data import DATASETS, load_dataset, partition_dataset
    from byzdask.engine.node import ByzantineNode
    from byzdask.engine.node.training import make_honest_nodes, node_seeds
    from byzdask.models import build_model
    from byzdask.registry import build, resolve

    if config.mode not in ("ps", "p2p"):
        raise ConfigurationError(f"mode must be 'ps' or 'p2p', got {config.mode!r}")
    for name, minimum in (("honest", 1), ("byzantine", 0), ("rounds", 0), ("eval_every", 1), ("workers", 1)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    f = config.resolved_f()
    n = config.honest + config.byzantine
    _check_numbers(config)
    # the rule and the pre-aggregators first, and f against n, before any data or model is made
    aggregator = build("aggregator", config.aggregator, {"f": f, "seed": config.seed}, **config.aggregator_kwargs)
    pre = [build("pre-aggregator", name, {"f": f, "bucket_size": 2, "seed": config.seed})
           for name in config.pre_aggregators]
    if config.mode == "ps" or config.topology == "complete":
        aggregator.check_n(n)
    else:
        _check_neighbourhoods(config, aggregator, n)
    from byzdask.models import DATASET_MODELS

    if config.dataset not in DATASETS:
        raise ConfigurationError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    if config.model not in DATASET_MODELS[config.dataset]:
        raise ConfigurationError(f"model {config.model!r} does not fit dataset {config.dataset!r}; choose one of: "
                                 f"{', '.join(DATASET_MODELS[config.dataset])}")
    split = load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed,
                         image=config.model in ("cnn", "resnet"))
    shards = partition_dataset(split.train, config.honest, kind=config.partition, alpha=config.alpha,
                               gamma=config.gamma, seed=config.seed)
    model = build_model(config.model, input_shape=split.train.input_shape, num_classes=split.train.num_classes,
                        seed=config.seed)
    honest = make_honest_nodes(shards, model, batch_size=config.batch_size, momentum=config.momentum,
                               seed=config.seed)
    byzantine = []
    if config.attack != "none" and config.byzantine:
        attack_defaults = {"f": config.byzantine, "N": n, "seed": config.seed,
                           "num_classes": split.train.num_classes}
        if getattr(resolve("attack", config.attack), "uses_defence", False):
            # attacks that search against the defence get copies of the run's rule and chain
            attack_defaults.update(aggregator=copy.deepcopy(aggregator), pre_aggregators=copy.deepcopy(tuple(pre)))
        seeds = node_seeds(config.seed + 1, config.byzantine)
        for j in range(config.byzantine):
            attack = build("attack", config.attack, attack_defaults, **config.attack_kwargs)
            data = shards[j % config.honest] if attack.uses_model_batch else None
            byzantine.append(ByzantineNode(attack, model=copy.deepcopy(model) if data is not None else None, data=data,
                                           batch_size=config.batch_size, seed=seeds[j], node_id=config.honest + j))
    return {"split": split, "shards": shards, "honest": honest, "byzantine": byzantine, "aggregator": aggregator,
            "pre_aggregators": pre, "model": model}


def make_pool(cluster: str, workers: int, jobqueue: dict[str, Any] | None = None, *, tls: bool = False) -> Any:
    """The :class:`~byzdask.engine.graph.pool.ActorPool` for ``--cluster`` (None for ``"none"``).

    For a batch system, :func:`byzdask.experiments.hpc.jobqueue_pool` builds the cluster from
    ``byzdask.jobqueue`` in dask.config and the options in ``jobqueue`` (``jobs``, ``queue``,
    ``walltime``...), and the pool closes it at shutdown; ``workers`` does not apply.
    """
    from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig

    if tls and cluster not in ("local", "thread"):
        raise ConfigurationError(f"--tls makes temporary certificates for a cluster byzdask starts (--cluster local or "
                                 f"thread), got --cluster {cluster!r}; give an attached cluster's tls:// address and "
                                 "its certificates through dask's distributed.comm.tls settings instead")
    security = True if tls else None
    if cluster == "none":
        return None
    if cluster == "local":
        return ActorPool(ActorPoolConfig("process", count=workers), security=security)
    if cluster == "thread":
        return ActorPool(ActorPoolConfig("thread", count=workers), security=security)
    if "://" in cluster:
        return ActorPool(ActorPoolConfig(cluster, count=workers))
    if cluster in _JOBQUEUE:
        from byzdask.experiments.hpc import jobqueue_pool

        return jobqueue_pool(cluster, **dict(jobqueue or {}))
    raise ConfigurationError(
        f"unknown cluster {cluster!r}; use local, thread, none, a scheduler address (tcp://host:port) "
        f"or one of {', '.join(_JOBQUEUE)}"
    )


def make_trainer(config: TrainConfig, job: dict[str, Any], pool: Any) -> Any:
    """The :class:`ParameterServer` or :class:`PeerToPeer` of a job (from :func:`build_job`) on ``pool``."""
    if config.protocol not in ("dsgd", "fedavg"):
        raise ConfigurationError(f"protocol must be 'dsgd' or 'fedavg', got {config.protocol!r}")
    if config.protocol == "fedavg":
        if config.mode != "ps":
            raise ConfigurationError("protocol 'fedavg' runs with mode 'ps' (a server), not 'p2p'")
        from byzdask.engine.fedavg import FedAvg

        return FedAvg(job["honest"], job["byzantine"], job["aggregator"], job["pre_aggregators"], lr=config.lr,
                      local_steps=config.local_steps, participation=config.participation,
                      clients_per_round=config.clients_per_round, server_lr=config.server_lr,
                      weight_decay=config.weight_decay, seed=config.seed, actor_pool=pool,
                      test_data=job["split"].test)
    if config.mode == "ps":
        from byzdask.engine.parameter_server.ps import ParameterServer

        return ParameterServer(job["honest"], job["byzantine"], job["aggregator"], job["pre_aggregators"],
                               lr=config.lr, weight_decay=config.weight_decay, actor_pool=pool,
                               test_data=job["split"].test)
    try:
        from byzdask.engine.peer_to_peer.train import PeerToPeer
    except ImportError as exc:
        raise ConfigurationError(f"--mode p2p is not available in this installation: {exc}") from exc
    h, b = config.honest, len(job["byzantine"])
    topology = parse_topology(config.topology, h + b, list(range(h, h + b)), seed=config.seed)
    return PeerToPeer(job["honest"], job["byzantine"], topology, aggregator=job["aggregator"],
                      pre_aggregator=job["pre_aggregators"], lr=config.lr, weight_decay=config.weight_decay,
                      actor_pool=pool, test_data=job["split"].test)


def run_training(config: TrainConfig, *, progress: bool = True,
                 echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one training job; return ``{"config", "history", "final_accuracy", "seconds", "dashboard"}``.

    The cluster (when the config asks for one byzdask starts) is started before and closed
    after the run, also on errors. ``echo`` receives the lines meant for the user (the
    dashboard link).

    Examples
    --------
    >>> out = run_training(TrainConfig(honest=4, byzantine=1, rounds=10, eval_every=10, cluster="none",
    ...                                attack="signflip"), progress=False)
    >>> [h["round"] for h in out["history"]], out["final_accuracy"] > 0.8
    ([10], True)
    """
    from byzdask.engine.graph.scheduler import pool_loop, run_coroutine_sync

    echo = echo or (lambda line: logger.info("%s", line))
    start = time.perf_counter()
    job = build_job(config)
    from byzdask.data import skew_summary

    echo(f"partition {config.partition}: {skew_summary(job['shards'])}")
    pool = make_pool(config.cluster, config.workers, tls=config.tls)
    dashboard = None
    try:
        if pool is not None:
            try:
                pool.start_sync()
            except OSError as exc:  # distributed's connect timeout (distributed.comm.timeouts.connect)
                raise ConfigurationError(f"cannot reach the cluster {config.cluster!r}: {exc}") from exc
            dashboard = pool.dashboard_link
            echo(f"cluster: {pool.size} workers ({config.cluster}); dashboard: {dashboard or 'not served'}")
        trainer = make_trainer(config, job, pool)
        try:
            history = trainer.run_sync(config.rounds, eval_every=config.eval_every, progress=progress)
        finally:
            close = getattr(trainer, "close", None)
            if close is not None:
                run_coroutine_sync(close, loop=pool_loop(pool))
    finally:
        if pool is not None:
            pool.shutdown_sync()
    final = history[-1]["accuracy"] if history else None
    return {"config": config.as_dict(), "history": history, "final_accuracy": final,
            "seconds": time.perf_counter() - start, "dashboard": dashboard}
