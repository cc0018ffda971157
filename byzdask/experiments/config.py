"""Sweep configurations: a grid of trainings, read from YAML or a dict, checked before anything runs.

A sweep config has two sections::

    name: nnm-heterogeneity            # optional, used in file names and attrs
    grid:                              # every list is one dimension of the result
      aggregators: [cwmed, cwtm, {name: cc, c_tau: 1.0}]
      pre_aggregators: [[], [nnm], [nnm, bucketing]]   # [] = none
      attacks: [signflip, little, {name: gaussian, sigma: 10}]
      f: [1, 3]
      partitions: [iid, {dirichlet: 0.1}]              # alpha coordinate: inf for iid
      seeds: [0, 1, 2]
      momentum: [0.0, 0.9]             # optional dimensions: momentum, lr, batch_size, gamma
      gamma: [1.0, 0.5, 0.0]           # gamma-similarity partition (ByzFL's): 1 IID, 0 extreme;
                                       # with it, partitions must be [iid] (the default)
    training:                          # the same for every run
      mode: ps                         # ps | p2p
      honest: 10                       # honest nodes; a run with f=3 has 10 + 3 nodes
      rounds: 100
      lr: 0.5
      momentum: 0.9                    # unless it is a grid dimension
      batch_size: 32
      model: logreg
      dataset: digits                  # or mnist, ..., cifar100 with data_dir (torchvision's files)
      eval_every: 10
      topology: complete               # p2p only
      protocol: fedavg                 # optional: dsgd (default) | fedavg, with local_steps,
      local_steps: 5                   # participation or clients_per_round, server_lr
    on_intolerable: skip               # skip | error

Grid points that no rule can run are decided here, before a cluster starts: a point whose rule
tolerates fewer than ``f`` Byzantine inputs among the ``n`` vectors it receives (after the
pre-aggregators: Bucketing shrinks ``n``; in p2p, a node's own vector plus its in-neighbours')
is recorded as ``"skipped"`` with the reason (``on_intolerable: skip``, the default, so that a
grid over f and rules can cover the region where some rules stop working), or refused with a
:class:`~byzdask.errors.ToleranceError` (``on_intolerable: error``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from byzdask.errors import ConfigurationError, ToleranceError

__all__ = ["BASE_DIMS", "OPTIONAL_DIMS", "Component", "RunSpec", "SweepConfig", "chain_label", "instantiate", "load_config"]

#: Dimensions every sweep result has (``round`` comes last, after the optional ones).
BASE_DIMS = ("aggregator", "pre_aggregator", "attack", "f", "alpha")
#: Training settings that may be given as a list in ``grid`` and then become a dimension
#: (placed after ``alpha``, before ``seed``).
OPTIONAL_DIMS = ("momentum", "lr", "batch_size", "gamma")
# Optional dimensions with no training default: a run's settings hold them only when given, so
# the keys (hashes) of sweeps that do not use them stay what they were.
_NO_DEFAULT = ("gamma", "dataset", "data_dir", "protocol", "local_steps", "participation", "clients_per_round",
               "server_lr")

_TRAINING_DEFAULTS: dict[str, Any] = {
    "mode": "ps", "honest": 10, "rounds": 50, "lr": 0.5, "momentum": 0.9, "batch_size": 32,
    "weight_decay": 0.0, "model": "logreg", "eval_every": 10, "topology": "complete",
}
_GRID_KEYS = ("aggregators", "pre_aggregators", "attacks", "f", "partitions", "seeds", *OPTIONAL_DIMS)
_TOP_KEYS = ("name", "grid", "training", "on_intolerable")
# Keyword defaults given to a component when its constructor takes them (as ``byzdask train`` does).
_BUCKET_SIZE = 2


def _kind_table(kind: str) -> Mapping[str, str]:
    from byzdask.registry import AGGREGATORS, ATTACKS, PRE_AGGREGATORS

    return {"aggregator": AGGREGATORS, "pre-aggregator": PRE_AGGREGATORS, "attack": ATTACKS}[kind]


def instantiate(kind: str, name: str, defaults: Mapping[str, Any], kwargs: Mapping[str, Any]) -> Any:
    """Build the registered ``kind`` ``name`` with ``kwargs`` plus those ``defaults`` its constructor takes.

    Examples
    --------
    >>> instantiate("aggregator", "cwtm", {"f": 2, "seed": 0}, {})
    CoordinateWiseTrimmedMean(f=2)
    """
    from byzdask.registry import resolve

    cls = resolve(kind, name)
    params = inspect.signature(cls).parameters
    merged = {k: v for k, v in defaults.items() if k in params}
    merged.update(kwargs)
    try:
        return cls(**merged)
    except TypeError as exc:
        raise ConfigurationError(f"cannot build {kind} {name!r} with {merged}: {exc}") from exc


@dataclass(frozen=True)
class Component:
    """A registered rule or attack with its keyword arguments, and the label used as coordinate.

    Parsed from ``"cwtm"``, ``{"name": "cc", "c_tau": 1.0}``, ``{"cc": {"c_tau": 1.0}}``;
    an explicit ``label`` key sets the coordinate value (default: ``name`` or
    ``name(k=v,...)``).

    Examples
    --------
    >>> Component.parse("aggregator", {"name": "cc", "c_tau": 1.0}).label
    'cc(c_tau=1.0)'
    >>> Component.parse("attack", "signflip")
    Component(kind='attack', name='signflip', kwargs={}, label='signflip')
    """

    kind: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def parse(cls, kind: str, entry: Any) -> Component:
        """Read one list entry (see the class docstring); unknown names fail here."""
        label = None
        if isinstance(entry, str):
            name, kwargs = entry, {}
        elif isinstance(entry, Mapping) and "name" in entry:
            kwargs = {str(k): v for k, v in entry.items() if k not in ("name", "label")}
            name, label = entry["name"], entry.get("label")
        elif isinstance(entry, Mapping) and len(entry) == 1:
            (name, kwargs), = entry.items()
            kwargs = {} if kwargs is None else kwargs
            if not isinstance(kwargs, Mapping):
                raise ConfigurationError(
                    f"{kind} entry {dict(entry)!r}: the keyword arguments of {name!r} must be a mapping, "
                    f"got {kwargs!r}"
                )
            kwargs = {str(k): v for k, v in kwargs.items()}
        else:
            raise ConfigurationError(
                f"{kind} entry {entry!r}: expected a short name such as 'cwtm', {{'name': 'cc', 'c_tau': 1.0}} "
                f"or {{'cc': {{'c_tau': 1.0}}}}"
            )
        table = _kind_table(kind)
        if kind == "attack" and name == "none":
            pass
        elif not isinstance(name, str) or name not in table:
            extra = ", none" if kind == "attack" else ""
            raise ConfigurationError(f"unknown {kind} {name!r} in entry {entry!r}; choose one of: "
                                     f"{', '.join(table)}{extra}")
        if label is None:
            label = name if not kwargs else f"{name}({','.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})"
        if not isinstance(label, str) or not label:
            raise ConfigurationError(f"{kind} entry {entry!r}: label must be a non-empty string, got {label!r}")
        return cls(kind, name, dict(kwargs), label)

    def as_config(self) -> Any:
        """The entry as it would be written in a config file."""
        if not self.kwargs and self.label == self.name:
            return self.name
        out = {"name": self.name, **self.kwargs}
        default = f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(self.kwargs.items()))})"
        if self.label != default:
            out["label"] = self.label
        return out


def chain_label(chain: Sequence[str]) -> str:
    """The coordinate value of a pre-aggregator chain: ``"none"`` or the names joined by ``+``.

    Examples
    --------
    >>> chain_label([]), chain_label(["nnm", "bucketing"])
    ('none', 'nnm+bucketing')
    """
    return "+".join(chain) if chain else "none"


def _parse_alpha(entry: Any) -> float:
    if isinstance(entry, str):
        text = entry.strip().lower()
        if text in ("iid", "inf"):
            return math.inf
        if text.startswith("dirichlet:"):
            entry = text.partition(":")[2]
            try:
                entry = float(entry)
            except ValueError:
                entry = None
    elif isinstance(entry, Mapping) and set(entry) == {"dirichlet"}:
        entry = entry["dirichlet"]
    if isinstance(entry, bool) or not isinstance(entry, (int, float)) or not entry > 0:
        raise ConfigurationError(
            f"partition entry {entry!r}: expected 'iid', a positive Dirichlet alpha, 'dirichlet:0.1' "
            f"or {{'dirichlet': 0.1}}"
        )
    return float(entry)


def _as_list(value: Any, key: str) -> list[Any]:
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise ConfigurationError(f"grid.{key} must be a list, got {value!r}")
    if len(value) == 0:
        raise ConfigurationError(f"grid.{key} must not be empty")
    return list(value)


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigurationError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_number(value: Any, what: str, *, positive: bool = False, upper: float | None = None) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > 0 if positive else value >= 0) and (upper is None or value < upper)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        bound += f" and < {upper}" if upper is not None else ""
        raise ConfigurationError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)


def _check_setting(key: str, value: Any, what: str) -> Any:
    if key == "momentum":
        return _check_number(value, what, upper=1.0)
    if key == "lr":
        return _check_number(value, what, positive=True)
    if key == "batch_size":
        return _check_int(value, what, 1)
    if key == "gamma":
        gamma = _check_number(value, what)
        if gamma > 1.0:
            raise ConfigurationError(f"{what} must lie in [0, 1] (1 = IID, 0 = sorted by label), got {value!r}")
        return gamma
    raise AssertionError(key)


def _unique(values: Sequence[Any], what: str) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise ConfigurationError(f"{what} lists {v!r} twice; coordinate values must be unique")
        seen.add(v)


@dataclass(frozen=True)
class RunSpec:
    """One grid point: its coordinates and every setting of its training.

    ``key`` is a hash of the settings (not of the labels): two sweeps that share a point share
    its stored result.
    """

    coords: dict[str, Any]
    settings: dict[str, Any]
    skip_reason: str | None = None

    @property
    def key(self) -> str:
        """16 hex digits of the SHA-256 of the settings as canonical JSON."""
        text = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def train_config(self) -> Any:
        """The :class:`byzdask.train.TrainConfig` of this run (no cluster: it runs inside one task)."""
        from byzdask.train import TrainConfig

        s = self.settings
        alpha = s["alpha"]
        if s.get("gamma") is not None:
            partition = "gamma"
        else:
            partition = "iid" if math.isinf(alpha) else "dirichlet"
        return TrainConfig(
            mode=s["mode"], aggregator=s["aggregator"], pre_aggregators=tuple(s["pre_aggregators"]),
            attack=s["attack"], honest=s["honest"], byzantine=s["f"], f=s["f"], rounds=s["rounds"], lr=s["lr"],
            momentum=s["momentum"], batch_size=s["batch_size"], weight_decay=s["weight_decay"],
            partition=partition, alpha=0.5 if math.isinf(alpha) else alpha,
            gamma=0.5 if s.get("gamma") is None else s["gamma"],
            topology=s["topology"], model=s["model"], seed=s["seed"], cluster="none", eval_every=s["eval_every"],
            aggregator_kwargs=dict(s["aggregator_kwargs"]), attack_kwargs=dict(s["attack_kwargs"]),
            dataset=s.get("dataset", "digits"), data_dir=s.get("data_dir"),
            protocol=s.get("protocol", "dsgd"), local_steps=s.get("local_steps", 1),
            participation=s.get("participation", 1.0), clients_per_round=s.get("clients_per_round"),
            server_lr=s.get("server_lr", 1.0),
        )


@dataclass
class SweepConfig:
    """A checked sweep configuration (see the module docstring for the format).

    Build with :meth:`from_dict`, :meth:`from_yaml` or :func:`load_config`; every problem is
    reported there, naming the bad entry.

    Examples
    --------
    >>> cfg = SweepConfig.from_dict({
    ...     "grid": {"aggregators": ["cwtm", "krum"], "attacks": ["signflip"], "f": [2, 4],
    ...              "seeds": [0]},
    ...     "training": {"honest": 4, "rounds": 3}})
    >>> cfg.shape
    {'aggregator': 2, 'pre_aggregator': 1, 'attack': 1, 'f': 2, 'alpha': 1, 'seed': 1}
    >>> [(p.coords["aggregator"], p.coords["f"]) for p in cfg.points() if p.skip_reason]
    [('cwtm', 4), ('krum', 2), ('krum', 4)]
    >>> cfg.points()[1].skip_reason
    'cwtm tolerates at most f=3 with n=8; this point has f=4'
    """

    aggregators: list[Component]
    pre_aggregators: list[tuple[str, ...]]
    attacks: list[Component]
    f: list[int]
    alpha: list[float]
    seeds: list[int]
    training: dict[str, Any]
    extra_dims: dict[str, list[Any]] = field(default_factory=dict)
    name: str = "sweep"
    on_intolerable: str = "skip"

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SweepConfig:
        """Check and read a config mapping (the parsed YAML)."""
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"a sweep config must be a mapping with 'grid' and 'training', got {raw!r}")
        unknown = sorted(set(raw) - set(_TOP_KEYS))
        if unknown:
            raise ConfigurationError(f"unknown top-level key(s) {unknown}; allowed: {', '.join(_TOP_KEYS)}")
        grid = raw.get("grid")
        if not isinstance(grid, Mapping):
            raise ConfigurationError(f"the config needs a 'grid' mapping, got {grid!r}")
        unknown = sorted(set(grid) - set(_GRID_KEYS))
        if unknown:
            raise ConfigurationError(f"unknown grid key(s) {unknown}; allowed: {', '.join(_GRID_KEYS)}")
        for key in ("aggregators", "attacks", "f"):
            if key not in grid:
                raise ConfigurationError(f"grid.{key} is required (a list)")
        training_raw = raw.get("training") or {}
        if not isinstance(training_raw, Mapping):
            raise ConfigurationError(f"'training' must be a mapping, got {training_raw!r}")
        unknown = sorted(set(training_raw) - set(_TRAINING_DEFAULTS) - set(_NO_DEFAULT))
        if unknown:
            raise ConfigurationError(
                f"unknown training key(s) {unknown}; allowed: {', '.join([*_TRAINING_DEFAULTS, *_NO_DEFAULT])}"
            )
        training = {**_TRAINING_DEFAULTS, **training_raw}

        aggregators = [Component.parse("aggregator", e) for e in _as_list(grid["aggregators"], "aggregators")]
        attacks = [Component.parse("attack", e) for e in _as_list(grid["attacks"], "attacks")]
        chains = []
        for entry in _as_list(grid.get("pre_aggregators", [[]]), "pre_aggregators"):
            if entry is None or entry == "none":
                entry = []
            if isinstance(entry, str):
                entry = [entry]
            if not isinstance(entry, Sequence) or any(not isinstance(x, str) for x in entry):
                raise ConfigurationError(
                    f"pre_aggregators entry {entry!r}: expected a list of short names such as ['nnm'], or []"
                )
            table = _kind_table("pre-aggregator")
            for name in entry:
                if name not in table:
                    raise ConfigurationError(f"unknown pre-aggregator {name!r} in chain {list(entry)!r}; choose "
                                             f"one of: {', '.join(table)}")
            chains.append(tuple(entry))
        f_values = [_check_int(v, f"grid.f entry {v!r}", 0) for v in _as_list(grid["f"], "f")]
        alphas = [_parse_alpha(e) for e in _as_list(grid.get("partitions", ["iid"]), "partitions")]
        seeds = [_check_int(v, f"grid.seeds entry {v!r}", 0) for v in _as_list(grid.get("seeds", [0]), "seeds")]
        extra = {}
        for key in OPTIONAL_DIMS:
            if key in grid:
                if key in training_raw:
                    raise ConfigurationError(f"{key} is given both in grid and in training; keep one")
                extra[key] = [_check_setting(key, v, f"grid.{key} entry {v!r}") for v in _as_list(grid[key], key)]
                training.pop(key, None)
        if ("gamma" in extra or "gamma" in training) and any(not math.isinf(a) for a in alphas):
            raise ConfigurationError(
                "gamma (the gamma-similarity partition) and a Dirichlet entry in grid.partitions cannot be "
                "combined; keep partitions: [iid] with gamma, or drop gamma"
            )
        _unique([c.label for c in aggregators], "grid.aggregators")
        _unique([c.label for c in attacks], "grid.attacks")
        _unique([chain_label(c) for c in chains], "grid.pre_aggregators")
        _unique(f_values, "grid.f")
        _unique(alphas, "grid.partitions")
        _unique(seeds, "grid.seeds")
        for key, values in extra.items():
            _unique(values, f"grid.{key}")
        cls._check_training(training)
        name = raw.get("name", "sweep")
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        on_intolerable = raw.get("on_intolerable", "skip")
        if on_intolerable not in ("skip", "error"):
            raise ConfigurationError(f"on_intolerable must be 'skip' or 'error', got {on_intolerable!r}")
        cfg = cls(aggregators=aggregators, pre_aggregators=chains, attacks=attacks, f=f_values, alpha=alphas,
                  seeds=seeds, training=training, extra_dims=extra, name=name, on_intolerable=on_intolerable)
        cfg._check_components()
        points = cfg.points()
        if on_intolerable == "error":
            bad = [p for p in points if p.skip_reason]
            if bad:
                raise ToleranceError(
                    f"{len(bad)} of {len(points)} grid points cannot run, e.g. {bad[0].coords}: "
                    f"{bad[0].skip_reason} (set on_intolerable: skip to record them as skipped)"
                )
        return cfg

    @classmethod
    def from_yaml(cls, text: str) -> SweepConfig:
        """Read a config from YAML text."""
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"the sweep config is not valid YAML: {exc}") from exc
        return cls.from_dict(raw)

    @staticmethod
    def _check_training(t: dict[str, Any]) -> None:
        from byzdask.models import MODELS

        if t["mode"] not in ("ps", "p2p"):
            raise ConfigurationError(f"training.mode must be 'ps' or 'p2p', got {t['mode']!r}")
        t["honest"] = _check_int(t["honest"], "training.honest", 1)
        t["rounds"] = _check_int(t["rounds"], "training.rounds", 1)
        t["eval_every"] = _check_int(t["eval_every"], "training.eval_every", 1)
        t["weight_decay"] = _check_number(t["weight_decay"], "training.weight_decay")
        for key in OPTIONAL_DIMS:
            if key in t:
                if isinstance(t[key], (list, tuple)):
                    raise ConfigurationError(f"training.{key} is a list; put it under grid to sweep over it")
                t[key] = _check_setting(key, t[key], f"training.{key}")
        if t["model"] not in MODELS:
            raise ConfigurationError(f"unknown training.model {t['model']!r}; choose one of: {', '.join(MODELS)}")
        if "dataset" in t:
            from byzdask.data import DATASETS

            if t["dataset"] not in DATASETS:
                raise ConfigurationError(f"unknown training.dataset {t['dataset']!r}; choose one of: "
                                         f"{', '.join(DATASETS)}")
        if not isinstance(t["topology"], str):
            raise ConfigurationError(f"training.topology must be a string such as 'ring:2', got {t['topology']!r}")

    def _check_components(self) -> None:
        # constructor errors (bad kwargs) are configuration errors, reported with the entry
        f_probe = max(self.f) or 1
        probes = [instantiate("aggregator", comp.name, {"f": f_probe}, comp.kwargs) for comp in self.aggregators]
        n_probe = self.training["honest"] + f_probe
        for comp in self.attacks:
            if comp.name != "none":
                # attacks that read the defence (uses_defence) get one of the grid's rules to probe with
                instantiate("attack", comp.name, {"f": f_probe, "N": n_probe, "seed": 0, "num_classes": 10,
                                                  "aggregator": probes[0], "pre_aggregators": ()}, comp.kwargs)
        if self.training["mode"] == "p2p":
            from byzdask.train import parse_topology

            for f in self.f:
                n = self.training["honest"] + f
                parse_topology(self.training["topology"], n, list(range(self.training["honest"], n)))

    # -- the grid ----------------------------------------------------------------------------
    @property
    def dims(self) -> tuple[str, ...]:
        """The run dimensions, in order (``round`` follows them in the result)."""
        return (*BASE_DIMS, *self.extra_dims, "seed")

    @property
    def coords(self) -> dict[str, list[Any]]:
        """The coordinate values of every run dimension."""
        out: dict[str, list[Any]] = {
            "aggregator": [c.label for c in self.aggregators],
            "pre_aggregator": [chain_label(c) for c in self.pre_aggregators],
            "attack": [c.label for c in self.attacks],
            "f": list(self.f),
            "alpha": list(self.alpha),
        }
        out.update({k: list(v) for k, v in self.extra_dims.items()})
        out["seed"] = list(self.seeds)
        return out

    @property
    def shape(self) -> dict[str, int]:
        """Length of each run dimension."""
        return {k: len(v) for k, v in self.coords.items()}

    @property
    def eval_rounds(self) -> list[int]:
        """The rounds at which every run evaluates: multiples of ``eval_every``, and the last."""
        rounds, every = self.training["rounds"], self.training["eval_every"]
        out = list(range(every, rounds + 1, every))
        if not out or out[-1] != rounds:
            out.append(rounds)
        return out

    def points(self) -> list[RunSpec]:
        """Every grid point, in C order of :attr:`dims`, with its skip reason (None when it runs)."""
        extra_keys = list(self.extra_dims)
        specs = []
        axes = [self.aggregators, self.pre_aggregators, self.attacks, self.f, self.alpha,
                *self.extra_dims.values(), self.seeds]
        for values in itertools.product(*axes):
            agg, chain, attack, f, alpha = values[:5]
            extras = dict(zip(extra_keys, values[5:-1]))
            seed = values[-1]
            settings = {k: v for k, v in self.training.items()}
            settings.update(extras)
            settings.update({
                "aggregator": agg.name, "aggregator_kwargs": agg.kwargs, "pre_aggregators": list(chain),
                "attack": attack.name, "attack_kwargs": attack.kwargs, "f": f, "alpha": alpha, "seed": seed,
            })
            coords = {"aggregator": agg.label, "pre_aggregator": chain_label(chain), "attack": attack.label,
                      "f": f, "alpha": alpha, **extras, "seed": seed}
            specs.append(RunSpec(coords, copy.deepcopy(settings), self._intolerable(settings)))
        return specs

    def _intolerable(self, s: dict[str, Any]) -> str | None:
        """Why the rule cannot run at this point, or None."""
        f, honest = s["f"], s["honest"]
        if s.get("protocol") == "fedavg":  # the rule sees the sampled clients and the Byzantine ones
            honest = s.get("clients_per_round") or max(1, round(float(s.get("participation", 1.0)) * honest))
        byzantine = 0 if s["attack"] == "none" else f
        n = honest + byzantine
        where = f"n={n}"
        if s["mode"] == "p2p":
            from byzdask.train import parse_topology

            top = parse_topology(s["topology"], n, list(range(honest, n)), seed=s["seed"])
            n = min(1 + len(list(top.in_neighbours(i))) for i in top.honest_ids)
            where = f"n={n} (own vector + fewest in-neighbours)"
        rule = instantiate("aggregator", s["aggregator"], {"f": f}, s["aggregator_kwargs"])
        if f > rule.max_f(n):  # pre-aggregators never add vectors: decided before allocating any
            return f"{s['aggregator']} tolerates at most f={rule.max_f(n)} with {where}; this point has f={f}"
        rows = np.zeros((n, 1))
        for name in s["pre_aggregators"]:
            pre = instantiate("pre-aggregator", name, {"f": f, "bucket_size": _BUCKET_SIZE, "seed": s["seed"]}, {})
            try:
                rows = pre.transform(rows, np)
            except (ValueError, ToleranceError) as exc:
                return f"pre-aggregator {name} cannot run on {where}: {exc}"
            if rows.shape[0] != n:
                where = f"{rows.shape[0]} vectors after {name}"
                n = rows.shape[0]
        rule = instantiate("aggregator", s["aggregator"], {"f": f}, s["aggregator_kwargs"])
        tolerated = rule.max_f(n)
        if f > tolerated:
            return f"{s['aggregator']} tolerates at most f={tolerated} with {where}; this point has f={f}"
        return None

    # -- writing -----------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """The config as a plain mapping that :meth:`from_dict` reads back."""
        grid: dict[str, Any] = {
            "aggregators": [c.as_config() for c in self.aggregators],
            "pre_aggregators": [list(c) for c in self.pre_aggregators],
            "attacks": [c.as_config() for c in self.attacks],
            "f": list(self.f),
            "partitions": ["iid" if math.isinf(a) else {"dirichlet": a} for a in self.alpha],
            "seeds": list(self.seeds),
        }
        grid.update({k: list(v) for k, v in self.extra_dims.items()})
        return {"name": self.name, "grid": grid, "training": dict(self.training),
                "on_intolerable": self.on_intolerable}

    def to_yaml(self) -> str:
        """The config as YAML text (what a result's ``config`` attribute holds).

        Examples
        --------
        >>> cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwmed"], "attacks": ["none"], "f": [0]}})
        >>> SweepConfig.from_yaml(cfg.to_yaml()) == cfg
        True
        """
        return yaml.safe_dump(self.as_dict(), sort_keys=False)


def load_config(source: Any) -> SweepConfig:
    """A :class:`SweepConfig` from a path to a YAML file, a mapping, or a SweepConfig.

    Examples
    --------
    >>> load_config({"grid": {"aggregators": ["gm"], "attacks": ["signflip"], "f": [1]}}).coords["alpha"]
    [inf]
    """
    if isinstance(source, SweepConfig):
        return source
    if isinstance(source, Mapping):
        return SweepConfig.from_dict(source)
    try:
        with open(source, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the sweep config {source!r}: {exc}") from exc
    return SweepConfig.from_yaml(text)
