"""The ``byzdask demo`` job: every rule against every attack, on synthetic gradients.

Honest nodes send a common mean plus Gaussian noise; each Byzantine node sends what an attack
makes of them. Every registered aggregator combines the honest and Byzantine vectors, and the
table reports how far each result lands from the mean of the honest vectors, and how long the
rule took. The first scenario, ``none``, is the baseline in which the Byzantine nodes send honest
vectors too.

The label-flipping attack computes the gradient of a torch model on flipped labels, so it runs
on its own scenario: honest nodes send the gradient of a small linear classifier on their batch
(true labels), Byzantine nodes the gradient on the same kind of batch with mirrored labels.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from byzdask import registry
from byzdask.errors import ConfigurationError

__all__ = ["DemoRow", "Scenario", "demo_rows", "format_rows", "run_demo"]

logger = logging.getLogger(__name__)

#: Classes and features of the linear classifier of the label-flip scenario.
LABELFLIP_CLASSES = 10
LABELFLIP_FEATURES = 64
LABELFLIP_BATCH = 32
#: Columns of the untimed first call of each rule.
WARM_UP_COLUMNS = 16
#: Name of the baseline scenario in which the Byzantine nodes send honest vectors.
NO_ATTACK = "none"
#: Standard deviation of the honest noise around the common mean.
HONEST_NOISE = 0.5


@dataclass
class DemoRow:
    """One cell of the demo: a rule against an attack.

    ``distance`` is ``||aggregate - honest mean||_2`` (``nan`` when the rule did not run) and
    ``note`` says why a rule or an attack did not run.
    """

    rule: str
    attack: str
    distance: float
    time_ms: float
    note: str = ""


@dataclass
class Scenario:
    """The vectors of one attack: the honest ones, the Byzantine ones, and a reference scale."""

    attack: str
    honest: np.ndarray  # (n_honest, d)
    byzantine: np.ndarray | None  # (n_byzantine, d)
    note: str = ""
    model_based: bool = False

    @property
    def honest_mean(self) -> np.ndarray:
        return self.honest.astype(np.float64).mean(axis=0)

    @property
    def spread(self) -> float:
        """Mean distance of an honest vector to the honest mean (the scale of a good answer)."""
        h = self.honest.astype(np.float64)
        return float(np.linalg.norm(h - h.mean(axis=0), axis=1).mean())


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _call_kwargs(cls: type, known: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``known`` that ``cls.__init__`` accepts; raises if a required one is unknown."""
    params = inspect.signature(cls.__init__).parameters
    kwargs, missing = {}, []
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name in known:
            kwargs[name] = known[name]
        elif p.default is inspect.Parameter.empty:
            missing.append(name)
    if missing:
        raise ConfigurationError(f"{cls.__name__} needs {', '.join(missing)}, which the demo does not choose")
    return kwargs


def _attack_known(n: int, f: int, seed: int, node: int, defence: Any = None) -> dict[str, Any]:
    return {"f": f, "N": n, "n": n, "seed": seed + 1000 + node, "mu": 0.0, "sigma": 1.0,
            "num_classes": LABELFLIP_CLASSES, "aggregator": defence, "pre_aggregators": ()}


def _gradient_scenario(name: str, cls: type, honest: np.ndarray, f: int, seed: int,
                       draw_honest: Callable[[], np.ndarray], defence: Any = None) -> Scenario:
    n = honest.shape[0] + f
    honest_list = list(honest)
    rows = []
    for node in range(f):
        attack = cls(**_call_kwargs(cls, _attack_known(n, f, seed, node, defence)))
        kwargs: dict[str, Any] = {}
        if attack.uses_honest_grads:
            kwargs["honest_grads"] = honest_list
        if attack.uses_base_grad:
            # the Byzantine node's own honest-looking gradient
            kwargs["base_grad"] = draw_honest()
        rows.append(_to_numpy(attack.apply(**kwargs)).reshape(-1).astype(honest.dtype, copy=False))
    byz = np.stack(rows) if rows else np.empty((0, honest.shape[1]), dtype=honest.dtype)
    return Scenario(name, honest, byz)


def _labelflip_scenario(name: str, cls: type, n_honest: int, f: int, seed: int) -> Scenario:
    import torch

    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(LABELFLIP_FEATURES, LABELFLIP_CLASSES)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    teacher = torch.randn(LABELFLIP_FEATURES, LABELFLIP_CLASSES, generator=gen)

    def batch() -> tuple[Any, Any]:
        x = torch.randn(LABELFLIP_BATCH, LABELFLIP_FEATURES, generator=gen)
        return x, (x @ teacher).argmax(dim=1)

    def honest_gradient() -> np.ndarray:
        x, y = batch()
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy()

    honest = np.stack([honest_gradient() for _ in range(n_honest)]).astype(np.float32)
    rows = []
    for node in range(f):
        attack = cls(**_call_kwargs(cls, _attack_known(n_honest + f, f, seed, node)))
        x, y = batch()
        rows.append(_to_numpy(attack.apply(model=model, x=x, y=y)).reshape(-1).astype(np.float32))
    byz = np.stack(rows) if rows else np.empty((0, honest.shape[1]), dtype=np.float32)
    params = honest.shape[1]
    note = (f"labelflip: gradients of a {LABELFLIP_FEATURES}->{LABELFLIP_CLASSES} linear classifier "
            f"({params} parameters, batches of {LABELFLIP_BATCH}); honest nodes use the true labels")
    return Scenario(name, honest, byz, note, model_based=True)


def build_scenarios(*, n_honest: int, n_byzantine: int, dim: int, seed: int,
                    attacks: list[str] | None = None, defence: Any = None) -> list[Scenario]:
    """The honest and Byzantine vectors of every attack (a scenario without vectors says why).

    ``attacks`` defaults to the baseline ``"none"`` (Byzantine nodes send honest vectors) and
    every registered attack. Attacks that read the defence (``uses_defence``) search against
    ``defence`` (default: :class:`~byzdask.aggregators.Average`); :func:`demo_rows` rebuilds
    their vectors against each rule.

    Examples
    --------
    >>> s = build_scenarios(n_honest=4, n_byzantine=1, dim=3, seed=0, attacks=["inf"])
    >>> s[0].honest.shape, s[0].byzantine is None or s[0].byzantine.shape
    ((4, 3), (1, 3))
    """
    rng = np.random.default_rng(seed)
    center = rng.normal(size=dim)

    def draw_honest(rows: int | None = None) -> np.ndarray:
        shape = (rows, dim) if rows is not None else (dim,)
        return (center + HONEST_NOISE * rng.normal(size=shape)).astype(np.float32)

    honest = draw_honest(n_honest)
    scenarios = []
    for name in attacks if attacks is not None else [NO_ATTACK, *registry.ATTACKS]:
        if name == NO_ATTACK:  # the baseline: the Byzantine nodes behave honestly
            scenarios.append(Scenario(name, honest, draw_honest(n_byzantine)))
            continue
        try:
            cls = registry.resolve("attack", name)
        except ImportError as exc:
            scenarios.append(Scenario(name, honest, None, f"not available ({exc})"))
            continue
        try:
            if getattr(cls, "uses_model_batch", False):
                scenarios.append(_labelflip_scenario(name, cls, n_honest, n_byzantine, seed))
            else:
                if getattr(cls, "uses_defence", False) and defence is None:
                    from byzdask.aggregators import Average

                    defence = Average()
                scenarios.append(_gradient_scenario(name, cls, honest, n_byzantine, seed, draw_honest, defence))
        except (ConfigurationError, ValueError, TypeError) as exc:
            logger.warning("attack %s skipped: %s", name, exc)
            scenarios.append(Scenario(name, honest, None, f"skipped: {exc}"))
    return scenarios


def _rule_known(n: int, f: int, honest_scale: float) -> dict[str, Any]:
    # c_tau: a clipping radius of the order of an honest vector's distance to the honest mean
    return {"f": f, "c_tau": max(honest_scale, 1e-6), "seed": 0}


def _rule_factory(name: str, n: int, f: int, scale: float) -> Callable[[], Any]:
    cls = registry.resolve("aggregator", name)
    kwargs = _call_kwargs(cls, _rule_known(n, f, scale))
    return lambda: cls(**kwargs)


def demo_rows(*, n_honest: int, n_byzantine: int, dim: int, seed: int = 0,
              rules: list[str] | None = None, attacks: list[str] | None = None) -> tuple[list[DemoRow], list[str]]:
    """Aggregate every scenario with every rule; returns the rows and notes on the scenarios.

    Examples
    --------
    >>> rows, notes = demo_rows(n_honest=5, n_byzantine=1, dim=8, rules=["average"], attacks=["inf"])
    >>> rows[0].rule, rows[0].attack, math.isinf(rows[0].distance) or math.isnan(rows[0].distance)
    ('average', 'inf', True)
    """
    if n_honest < 1 or n_byzantine < 0 or dim < 1:
        raise ConfigurationError(
            f"need n_honest >= 1, n_byzantine >= 0 and dim >= 1; got n_honest={n_honest}, "
            f"n_byzantine={n_byzantine}, dim={dim}")
    scenarios = build_scenarios(n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed, attacks=attacks)
    notes = []
    plain = [s for s in scenarios if not s.model_based]
    if plain:
        notes.append(f"honest vectors: a common mean + N(0, {HONEST_NOISE}^2) noise per coordinate; honest spread "
                     f"(mean distance of an honest vector to the honest mean) {plain[0].spread:.4g}")
    notes += [s.note + f"; honest spread {s.spread:.4g}" for s in scenarios if s.model_based and s.byzantine is not None]
    n = n_honest + n_byzantine
    rows: list[DemoRow] = []
    warmed: set[str] = set()
    for rule in rules if rules is not None else list(registry.AGGREGATORS):
        for sc in scenarios:
            if sc.byzantine is None:
                rows.append(DemoRow(rule, sc.attack, math.nan, math.nan, sc.note))
                continue
            if sc.attack != NO_ATTACK and getattr(registry.resolve("attack", sc.attack), "uses_defence", False):
                sc = _against(rule, sc, n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed)
                if sc.byzantine is None:
                    rows.append(DemoRow(rule, sc.attack, math.nan, math.nan, sc.note))
                    continue
            rows.append(_run_rule(rule, sc, n, n_byzantine, warmed))
    return rows, notes


def _against(rule: str, sc: Scenario, *, n_honest: int, n_byzantine: int, dim: int, seed: int) -> Scenario:
    """The scenario of an attack that reads the defence, rebuilt against ``rule``."""
    try:
        defence = _rule_factory(rule, n_honest + n_byzantine, n_byzantine, sc.spread)()
        return build_scenarios(n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed, attacks=[sc.attack],
                               defence=defence)[0]
    except (ImportError, ConfigurationError, ValueError, TypeError) as exc:
        return Scenario(sc.attack, sc.honest, None, f"skipped: {exc}")


def _run_rule(rule: str, sc: Scenario, n: int, f: int, warmed: set[str]) -> DemoRow:
    try:
        make = _rule_factory(rule, n, f, sc.spread)
    except ImportError as exc:
        return DemoRow(rule, sc.attack, math.nan, math.nan, f"not available ({exc})")
    except ConfigurationError as exc:
        return DemoRow(rule, sc.attack, math.nan, math.nan, f"skipped: {exc}")
    vectors = list(sc.honest) + list(sc.byzantine)
    try:
        agg = make()
        if rule not in warmed:
            # kernels compiled on first use (numba) are not part of the time reported
            make().aggregate([v[:WARM_UP_COLUMNS].copy() for v in vectors])
            warmed.add(rule)
        t0 = time.perf_counter()
        out = agg.aggregate(vectors)
        ms = 1e3 * (time.perf_counter() - t0)
    except ValueError as exc:  # ToleranceError, NonFiniteError, InputError derive from it
        return DemoRow(rule, sc.attack, math.nan, math.nan, f"{type(exc).__name__}: {exc}")
    out = _to_numpy(out).astype(np.float64).reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        dist = float(np.linalg.norm(out - sc.honest_mean))
    return DemoRow(rule, sc.attack, dist, ms)


def _fmt_distance(d: float) -> str:
    if math.isnan(d):
        return "nan"
    if math.isinf(d):
        return "inf"
    return f"{d:.4g}"


def format_rows(rows: list[DemoRow], notes: list[str] = (), *, header: str = "") -> str:
    """Aligned plain-text table of :class:`DemoRow` (rule, attack, distance, time, note).

    Examples
    --------
    >>> print(format_rows([DemoRow("average", "inf", math.inf, 0.5)]))
    rule     attack  distance to honest mean  time (ms)
    -------  ------  -----------------------  ---------
    average  inf                         inf       0.50
    """
    head = ["rule", "attack", "distance to honest mean", "time (ms)"]
    has_note = any(r.note for r in rows)
    if has_note:
        head.append("note")
    body = []
    for r in rows:
        if r.note and math.isnan(r.distance):
            cells = [r.rule, r.attack, "-", "-"]
        else:
            cells = [r.rule, r.attack, _fmt_distance(r.distance), f"{r.time_ms:.2f}"]
        if has_note:
            cells.append(r.note)
        body.append(cells)
    widths = [max(len(str(c[i])) for c in [head, *body]) for i in range(len(head))]
    right = {2, 3}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [header] if header else []
    out += [line(head), "  ".join("-" * w for w in widths)] + [line(c) for c in body]
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def run_demo(*, n_honest: int = 10, n_byzantine: int = 3, dim: int = 100_000, seed: int = 0) -> str:
    """Build honest and attacked gradients, aggregate them with every rule, return a table.

    Parameters
    ----------
    n_honest, n_byzantine : int
        Numbers of honest and Byzantine nodes; rules that take f get ``f = n_byzantine``.
    dim : int
        Dimension of the vectors (the label-flip scenario uses its model's size instead).
    seed : int
        Seed of the synthetic data and of the random attacks.

    Returns
    -------
    str
        An aligned table: rule, attack, distance of the aggregate to the mean of the honest
        vectors, and time of the aggregation call in ms. A rule that cannot run (e.g. n too
        small for its f) shows the reason instead.

    Examples
    --------
    >>> print(run_demo(n_honest=4, n_byzantine=1, dim=5).splitlines()[0])  # doctest: +ELLIPSIS
    byzdask demo: 4 honest + 1 Byzantine vectors of dimension 5, seed 0...
    """
    rows, notes = demo_rows(n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed)
    header = (f"byzdask demo: {n_honest} honest + {n_byzantine} Byzantine vectors of dimension {dim}, "
              f"seed {seed}; f = {n_byzantine} for the rules that take it")
    return format_rows(rows, notes, header=header)
