"""Reductions of sweep results: worst case over attacks, per-attack tables, ranking of rules.

A sweep returns an :class:`xarray.Dataset` with dimensions ``aggregator``, ``pre_aggregator``,
``attack``, ``f``, ``alpha``, ``seed`` and ``round`` (and any further grid dimension, such as
``momentum``), variables such as ``accuracy`` and ``loss``, and NaN where a run failed. Every
function here works on whichever of those dimensions are present; any dimension that is not a
rule, attack, seed or round dimension is a *cell* dimension (``f``, ``alpha``, ``momentum``...)
and is kept apart.

How numbers are reduced (the convention of ByzFL's ``evaluate_results``, Allouah et al. 2023):

1. the curve of each configuration is averaged over seeds (``seed_mean``; a failed seed is
   skipped, a configuration whose seeds all failed stays NaN);
2. the seed-averaged curve is reduced over rounds: ``"final"`` takes the last evaluated round,
   ``"best"`` the best round (the maximum accuracy, the minimum loss);
3. the worst case over attacks is the minimum of that number over the attack dimension (the
   maximum for a loss), leaving out the ``none`` baseline (no Byzantine node). By default a cell in which some attack failed has no worst case (NaN):
   a worst case that skips a failed attack would overstate the rule.

Averaging before taking the maximum over rounds makes "best" a property of the mean curve
(what ByzFL's heatmaps show) rather than an average of per-seed maxima, which is biased upwards
by the noise of single runs.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from byzdask.errors import ConfigurationError, InputError

__all__ = [
    "METRICS",
    "RULE_DIMS",
    "attack_table",
    "cell_dims",
    "cell_label",
    "higher_is_better",
    "iter_cells",
    "ranking",
    "reduce_rounds",
    "rule_label",
    "run_metric",
    "seed_band",
    "seed_mean",
    "stack_rules",
    "synthetic_results",
    "worst_case",
    "worst_case_table",
]

#: Dimensions that together name a robust rule.
RULE_DIMS = ("aggregator", "pre_aggregator")
ATTACK_DIM = "attack"
SEED_DIM = "seed"
ROUND_DIM = "round"
#: The attack coordinate of runs without Byzantine nodes.
NO_ATTACK = "none"
#: Reductions over rounds.
METRICS = ("final", "best")
_NO_PRE = ("none", "", "None")
_LOWER_IS_BETTER = ("loss", "consensus_distance")


def higher_is_better(variable: str) -> bool:
    """Whether larger values of ``variable`` are better (accuracy) or worse (loss, distance).

    Examples
    --------
    >>> higher_is_better("accuracy"), higher_is_better("worst_accuracy"), higher_is_better("loss")
    (True, True, False)
    """
    return not any(variable == name or variable.endswith("_" + name) for name in _LOWER_IS_BETTER)


def rule_label(aggregator: Any, pre_aggregator: Any = "none") -> str:
    """A short name of a rule: ``"cwtm"``, or ``"cwtm (nnm+bucketing)"`` with a pre-aggregator chain.

    Examples
    --------
    >>> rule_label("cwtm"), rule_label("krum", "nnm+bucketing")
    ('cwtm', 'krum (nnm+bucketing)')
    """
    pre = str(pre_aggregator)
    return str(aggregator) if pre in _NO_PRE else f"{aggregator} ({pre})"


def _format_value(dim: Hashable, value: Any) -> str:
    if dim == "alpha" and isinstance(value, (float, np.floating)) and math.isinf(value):
        return "iid"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value.item() if isinstance(value, np.generic) else value)


def cell_label(cell: dict[Hashable, Any]) -> str:
    """``"f=3 alpha=0.1"`` for a cell (``alpha=inf`` reads ``alpha=iid``); ``"all"`` for no dimension.

    Examples
    --------
    >>> cell_label({"f": 3, "alpha": float("inf")})
    'f=3 alpha=iid'
    >>> cell_label({})
    'all'
    """
    if not cell:
        return "all"
    return " ".join(f"{dim}={_format_value(dim, value)}" for dim, value in cell.items())


def cell_dims(obj: xr.Dataset | xr.DataArray) -> list[Hashable]:
    """The dimensions that are neither rule, attack, seed, round nor ``rule`` (``f``, ``alpha``, ...).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 3, 1)), dims=("aggregator", "f", "momentum"))
    >>> cell_dims(da)
    ['f', 'momentum']
    """
    skip = {*RULE_DIMS, ATTACK_DIM, SEED_DIM, ROUND_DIM, "rule"}
    return [dim for dim in obj.dims if dim not in skip]


def _variable(ds: xr.Dataset | xr.DataArray, variable: str) -> xr.DataArray:
    if isinstance(ds, xr.DataArray):
        return ds
    if variable not in ds.data_vars:
        raise InputError(f"variable must be one of {sorted(map(str, ds.data_vars))}, got {variable!r}")
    return ds[variable]


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigurationError(f"metric must be one of {METRICS}, got {metric!r}")


def seed_mean(da: xr.DataArray) -> xr.DataArray:
    """Mean over the ``seed`` dimension, skipping failed (NaN) seeds; unchanged without one.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray([[0.5, 0.7], [np.nan, 0.9]], dims=("seed", "round"))
    >>> seed_mean(da).values.tolist()
    [0.5, 0.8]
    """
    if SEED_DIM not in da.dims:
        return da
    return da.mean(SEED_DIM, skipna=True, keep_attrs=True)


def seed_band(da: xr.DataArray, band: str = "ci95") -> tuple[xr.DataArray, xr.DataArray]:
    """The mean over seeds and a band around it: ``(lower, upper)``.

    Parameters
    ----------
    da : xarray.DataArray
        Values with a ``seed`` dimension (others are kept).
    band : {"ci95", "std", "minmax"}
        ``ci95``: mean +- 1.96 s / sqrt(n) with s the sample standard deviation over the n
        finite seeds (ByzFL's band); ``std``: mean +- s; ``minmax``: the range over seeds.
        With one seed the band is the mean itself.

    Returns
    -------
    (lower, upper) : tuple of xarray.DataArray

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[1.0], [3.0]], dims=("seed", "round"))
    >>> [float(x[0]) for x in seed_band(da, "std")]
    [0.5857864376269049, 3.414213562373095]
    >>> [float(x[0]) for x in seed_band(da, "minmax")]
    [1.0, 3.0]
    """
    if band not in ("ci95", "std", "minmax"):
        raise ConfigurationError(f"band must be 'ci95', 'std' or 'minmax', got {band!r}")
    mean = seed_mean(da)
    if SEED_DIM not in da.dims:
        return mean, mean
    if band == "minmax":
        return da.min(SEED_DIM, skipna=True), da.max(SEED_DIM, skipna=True)
    count = da.notnull().sum(SEED_DIM)
    spread = da.std(SEED_DIM, skipna=True, ddof=1).where(count > 1, 0.0)
    if band == "ci95":
        spread = 1.96 * spread / np.sqrt(count.where(count > 0, 1))
    return mean - spread, mean + spread


def reduce_rounds(da: xr.DataArray, metric: str = "best", *, higher: bool = True) -> xr.DataArray:
    """Reduce the ``round`` dimension: the last evaluated round (``"final"``) or the best one.

    Rounds at which no configuration has a value (not evaluated) are dropped first, so the final
    value is the one at the last round that was evaluated; a configuration that failed stays NaN.

    Parameters
    ----------
    da : xarray.DataArray
        Values with a ``round`` dimension.
    metric : {"final", "best"}
    higher : bool
        For ``"best"``: take the maximum (accuracy) or the minimum (loss).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray([[0.2, 0.9, 0.7, np.nan]], dims=("run", "round"), coords={"round": [0, 5, 10, 15]})
    >>> reduce_rounds(da, "final").values.tolist(), reduce_rounds(da, "best").values.tolist()
    ([0.7], [0.9])
    """
    _check_metric(metric)
    if ROUND_DIM not in da.dims:
        raise InputError(f"values need a {ROUND_DIM!r} dimension, got dimensions {tuple(da.dims)}")
    evaluated = da.notnull().any([d for d in da.dims if d != ROUND_DIM]) if da.ndim > 1 else da.notnull()
    da = da.isel({ROUND_DIM: np.flatnonzero(evaluated.values)})
    if da.sizes[ROUND_DIM] == 0:
        raise InputError("no round has a value: every run failed or none was evaluated")
    if metric == "final":
        return da.isel({ROUND_DIM: -1}, drop=True)
    return da.max(ROUND_DIM, skipna=True) if higher else da.min(ROUND_DIM, skipna=True)


def run_metric(ds: xr.Dataset | xr.DataArray, variable: str = "accuracy", metric: str = "best") -> xr.DataArray:
    """One number per configuration: the seed-averaged curve reduced over rounds.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Sweep results.
    variable : str
        The variable of a Dataset (``accuracy``, ``loss``, ``worst_accuracy``...).
    metric : {"final", "best"}
        Last evaluated round, or best round (max accuracy / min loss) of the mean curve.

    Returns
    -------
    xarray.DataArray
        Without the ``seed`` and ``round`` dimensions.

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[0.4, 0.8, 0.6], [0.6, 0.6, 0.8]], dims=("seed", "round"))
    >>> round(float(run_metric(da, metric="best")), 3), round(float(run_metric(da, metric="final")), 3)
    (0.7, 0.7)
    """
    da = _variable(ds, variable)
    return reduce_rounds(seed_mean(da), metric, higher=higher_is_better(str(da.name or variable)))


def stack_rules(da: xr.DataArray) -> xr.DataArray:
    """Replace the ``aggregator`` and ``pre_aggregator`` dimensions by one ``rule`` dimension of labels.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.arange(4.0).reshape(2, 2), dims=("aggregator", "pre_aggregator"),
    ...                   coords={"aggregator": ["cwmed", "krum"], "pre_aggregator": ["none", "nnm"]})
    >>> stack_rules(da).rule.values.tolist()
    ['cwmed', 'cwmed (nnm)', 'krum', 'krum (nnm)']
    """
    present = [d for d in RULE_DIMS if d in da.dims]
    if not present:
        return da.expand_dims(rule=["all"])
    if len(present) == 1:
        labels = [str(v) for v in da[present[0]].values]
        if present[0] == "pre_aggregator":
            labels = [rule_label("?", v) for v in labels]
        return da.rename({present[0]: "rule"}).assign_coords(rule=labels)
    stacked = da.stack(rule=present)
    labels = [rule_label(a, p) for a, p in stacked.indexes["rule"]]
    return stacked.drop_vars(["rule", *present]).assign_coords(rule=labels)


def worst_case(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    attacks: Sequence[str] | None = None,
    skip_failed: bool = False,
) -> xr.Dataset:
    """The worst case over attacks of each rule and cell.

    ``value`` = min over attacks of :func:`run_metric` (max for a loss); ``attack`` names the
    attack that reached it.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Sweep results with an ``attack`` dimension.
    variable, metric : str
        As in :func:`run_metric`.
    attacks : sequence of str, optional
        Only these attacks. Default: every attack but ``"none"`` (no Byzantine node: the clean
        baseline, not an attack), which counts only when it is the only one.
    skip_failed : bool
        When False (default) a cell in which any attack has no value is NaN (its worst case is
        unknown); when True failed attacks are ignored.

    Returns
    -------
    xarray.Dataset
        Variables ``value`` (float) and ``attack`` (str, "" where NaN), with the rule and cell
        dimensions.

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[[0.9, 0.95]], [[0.4, 0.5]]], dims=("attack", "aggregator", "round"),
    ...                   coords={"attack": ["gaussian", "little"], "aggregator": ["cwtm"]})
    >>> wc = worst_case(da, metric="final")
    >>> float(wc.value.sel(aggregator="cwtm")), str(wc.attack.sel(aggregator="cwtm").item())
    (0.5, 'little')
    """
    da = _variable(ds, variable)
    if ATTACK_DIM not in da.dims:
        raise InputError(f"values need an {ATTACK_DIM!r} dimension, got dimensions {tuple(da.dims)}")
    if attacks is not None:
        missing = sorted(set(attacks) - {str(a) for a in da[ATTACK_DIM].values})
        if missing:
            raise ConfigurationError(
                f"attacks {missing} are not in the results; they hold {[str(a) for a in da[ATTACK_DIM].values]}"
            )
        da = da.sel({ATTACK_DIM: list(attacks)})
    else:
        real = [a for a in da[ATTACK_DIM].values if str(a) != NO_ATTACK]
        if real:
            da = da.sel({ATTACK_DIM: real})
    per_run = run_metric(da, variable, metric).transpose(..., ATTACK_DIM)
    values = per_run.values.astype(float)
    score = values if higher_is_better(str(da.name or variable)) else -values
    missing = np.isnan(score)
    index = np.where(missing, np.inf, score).argmin(axis=-1)
    worst = np.take_along_axis(values, index[..., None], axis=-1)[..., 0]
    names = np.asarray([str(a) for a in per_run[ATTACK_DIM].values], dtype=object)[index]
    unknown = missing.all(axis=-1) | (missing.any(axis=-1) & (not skip_failed))
    worst = np.where(unknown, np.nan, worst)
    names = np.where(unknown, "", names).astype(str)
    dims = per_run.dims[:-1]
    coords = {name: coord for name, coord in per_run.coords.items() if ATTACK_DIM not in coord.dims}
    return xr.Dataset({"value": (dims, worst), "attack": (dims, names)}, coords=coords,
                      attrs={"variable": variable, "metric": metric})


def worst_case_table(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    attacks: Sequence[str] | None = None,
    skip_failed: bool = False,
    with_attack: bool = False,
) -> pd.DataFrame:
    """Worst case over attacks as a table: one row per rule, one column per cell (``f=3 alpha=0.1``).

    Parameters
    ----------
    ds, variable, metric, attacks, skip_failed
        As in :func:`worst_case`.
    with_attack : bool
        Cells read ``"0.812 (little)"`` (strings) instead of numbers.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[[0.9], [0.3]], [[0.6], [0.5]]], dims=("aggregator", "attack", "round"),
    ...                   coords={"aggregator": ["avg", "cwtm"], "attack": ["none", "little"]})
    >>> worst_case_table(da).round(3).to_dict()
    {'all': {'avg': 0.3, 'cwtm': 0.5}}
    """
    wc = worst_case(ds, variable, metric, attacks=attacks, skip_failed=skip_failed)
    value, attack = stack_rules(wc["value"]), stack_rules(wc["attack"])
    columns = {}
    for cell in iter_cells(value):
        v, a = value.sel(cell), attack.sel(cell)
        if with_attack:
            columns[cell_label(cell)] = [
                "nan" if np.isnan(x) else f"{x:.3f} ({n})" for x, n in zip(v.values, a.values, strict=True)
            ]
        else:
            columns[cell_label(cell)] = v.values
    table = pd.DataFrame(columns, index=pd.Index([str(r) for r in value.rule.values], name="rule"))
    table.attrs.update(variable=variable, metric=metric)
    return table


def attack_table(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    cell: dict[Hashable, Any] | None = None,
    skip_failed: bool = False,
) -> pd.DataFrame:
    """Per-attack table: one row per rule (and cell), one column per attack, plus the worst case.

    Parameters
    ----------
    ds, variable, metric, skip_failed
        As in :func:`worst_case`.
    cell : dict, optional
        Select one cell, e.g. ``{"f": 3, "alpha": 0.1}``; cell dimensions left with several
        values become index levels.

    Returns
    -------
    pandas.DataFrame
        Index ``rule`` (plus the remaining cell dimensions); columns: the attacks, ``worst``
        and ``worst_attack``.

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[[0.9], [0.3]], [[0.6], [0.5]]], dims=("aggregator", "attack", "round"),
    ...                   coords={"aggregator": ["avg", "cwtm"], "attack": ["none", "little"]})
    >>> print(attack_table(da).to_string())  # doctest: +NORMALIZE_WHITESPACE
          none  little  worst worst_attack
    rule
    avg    0.9     0.3    0.3       little
    cwtm   0.6     0.5    0.5       little
    """
    da = _variable(ds, variable)
    if cell:
        da = _select(da, cell)
    per_run = stack_rules(run_metric(da, variable, metric))
    wc = worst_case(da, variable, metric, skip_failed=skip_failed)
    keep = [d for d in cell_dims(per_run) if per_run.sizes[d] > 1]
    drop = [d for d in cell_dims(per_run) if d not in keep]
    per_run = per_run.squeeze(drop, drop=True).transpose("rule", *keep, ATTACK_DIM)
    frame = per_run.to_dataframe(name="value")["value"].unstack(ATTACK_DIM)
    frame = frame[[str(a) for a in per_run[ATTACK_DIM].values]]
    for column, values in (("worst", wc["value"]), ("worst_attack", wc["attack"])):
        values = stack_rules(values).squeeze(drop, drop=True).transpose("rule", *keep)
        frame[column] = values.to_series().reindex(frame.index).values
    frame.columns.name = None
    frame.attrs.update(variable=variable, metric=metric)
    return frame


def _select(da: xr.DataArray, cell: dict[Hashable, Any]) -> xr.DataArray:
    unknown = sorted(str(d) for d in cell if d not in da.dims)
    if unknown:
        raise ConfigurationError(f"cannot select {unknown}: the results have dimensions {tuple(map(str, da.dims))}")
    try:
        return da.sel({d: [v] if not isinstance(v, (list, tuple)) else list(v) for d, v in cell.items()})
    except KeyError as exc:
        choices = {str(d): da[d].values.tolist() for d in cell}
        raise ConfigurationError(f"no such cell {cell!r}; the results hold {choices}") from exc


def ranking(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    attacks: Sequence[str] | None = None,
    skip_failed: bool = False,
) -> pd.DataFrame:
    """Rules ranked by their worst case over attacks.

    Rules are sorted by their worst case averaged over the cells (``f``, ``alpha``, ...), best
    first (ties broken by mean rank). The table also gives, per rule, the mean of its rank in
    each cell (rank 1 is the best; ties share the mean rank), its poorest worst case over the
    cells (``min_worst``: the lowest accuracy, or the highest loss), and the cells in which it
    is the best rule.

    Returns
    -------
    pandas.DataFrame
        Index ``rule``; columns ``mean_rank``, ``mean_worst``, ``min_worst``, ``cells_won``,
        ``cells`` (cells with a value).

    Examples
    --------
    >>> import xarray as xr
    >>> da = xr.DataArray([[[0.9], [0.3]], [[0.6], [0.5]]], dims=("aggregator", "attack", "round"),
    ...                   coords={"aggregator": ["avg", "cwtm"], "attack": ["none", "little"]})
    >>> ranking(da).index.tolist()
    ['cwtm', 'avg']
    """
    table = worst_case_table(ds, variable, metric, attacks=attacks, skip_failed=skip_failed)
    signed = table if higher_is_better(variable) else -table
    ranks = signed.rank(axis=0, ascending=False, method="average", na_option="keep")
    best = signed.max(axis=0)
    won = signed.eq(best, axis=1) & signed.notna()
    mean_worst = table.mean(axis=1, skipna=True)
    out = pd.DataFrame({
        "mean_rank": ranks.mean(axis=1, skipna=True),
        "mean_worst": mean_worst,
        "min_worst": table.min(axis=1, skipna=True) if higher_is_better(variable) else table.max(axis=1),
        "cells_won": won.sum(axis=1).astype(int),
        "cells": table.notna().sum(axis=1).astype(int),
    })
    sign = 1.0 if higher_is_better(variable) else -1.0
    order = np.lexsort((out["mean_rank"].fillna(np.inf).values,
                        -sign * out["mean_worst"].fillna(-np.inf * sign).values))
    out = out.iloc[order]
    out.attrs.update(variable=variable, metric=metric)
    return out


def iter_cells(da: xr.DataArray | xr.Dataset, dims: Iterable[Hashable] | None = None) -> list[dict[Hashable, Any]]:
    """Every combination of values of ``dims`` (default: the cell dimensions), as dicts for ``.sel``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 1)), dims=("f", "alpha"), coords={"f": [1, 3], "alpha": [0.1]})
    >>> [cell_label(c) for c in iter_cells(da)]
    ['f=1 alpha=0.1', 'f=3 alpha=0.1']
    """
    dims = cell_dims(da) if dims is None else list(dims)
    if not dims:
        return [{}]
    grids = np.meshgrid(*[da[d].values for d in dims], indexing="ij")
    cells = []
    for i in range(grids[0].size):
        values = (g.flat[i] for g in grids)
        cells.append({d: v.item() if isinstance(v, np.generic) else v for d, v in zip(dims, values, strict=True)})
    return cells


def synthetic_results(
    *,
    aggregators: Sequence[str] = ("average", "cwtm", "krum"),
    pre_aggregators: Sequence[str] = ("none", "nnm"),
    attacks: Sequence[str] = ("none", "signflip", "little"),
    f: Sequence[int] = (1, 3),
    alpha: Sequence[float] = (0.1, math.inf),
    seeds: int = 3,
    rounds: Sequence[int] = (0, 5, 10, 15, 20),
    extra: dict[str, Sequence[Any]] | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """A small made-up result set with the layout of a sweep's, for examples and tests.

    Accuracy rises towards a ceiling that drops with ``f``, with heterogeneity (small
    ``alpha``) and with the attack, less for robust rules and with ``nnm``; seeds add noise.
    The numbers mean nothing; the dimensions, coordinates and variables are those of
    :func:`byzdask.experiments.run_sweep` (``accuracy``, ``loss``; ``alpha=inf`` for iid).

    Examples
    --------
    >>> ds = synthetic_results(seeds=2)
    >>> dict(ds.accuracy.sizes)
    {'aggregator': 3, 'pre_aggregator': 2, 'attack': 3, 'f': 2, 'alpha': 2, 'seed': 2, 'round': 5}
    """
    rng = np.random.default_rng(seed)
    extra = dict(extra or {})
    coords: dict[str, Any] = {"aggregator": list(aggregators), "pre_aggregator": list(pre_aggregators),
                              "attack": list(attacks), "f": list(f), "alpha": [float(a) for a in alpha],
                              **{k: list(v) for k, v in extra.items()}, "seed": list(range(seeds)),
                              "round": list(rounds)}
    shape = tuple(len(v) for v in coords.values())
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    index = dict(zip(coords, grids, strict=True))
    robust = np.where(index["aggregator"] == 0, 0.0, 0.5 + 0.4 * index["aggregator"] / max(1, len(aggregators) - 1))
    mixing = np.asarray([str(p) != "none" for p in pre_aggregators])[index["pre_aggregator"]]
    harm = np.asarray([0.0 if str(a) == "none" else 0.3 + 0.2 * i for i, a in enumerate(attacks)])[index["attack"]]
    f_share = np.asarray(f, dtype=float)[index["f"]] / (2.0 * max(f) + 1.0)
    hetero = np.asarray([0.0 if math.isinf(a) else 0.2 / (1.0 + a) for a in alpha])[index["alpha"]]
    damage = harm * f_share * (1.0 - robust) * 2.0 + hetero * (1.0 - 0.5 * mixing)
    ceiling = np.clip(0.95 - damage, 0.1, 0.95)
    progress = 1.0 - np.exp(-np.asarray(rounds, dtype=float) / 6.0)[index["round"]]
    accuracy = np.clip(0.1 + (ceiling - 0.1) * progress + rng.normal(0.0, 0.01, shape), 0.0, 1.0)
    loss = -np.log(np.clip(accuracy, 1e-3, 1.0))
    dims = tuple(coords)
    ds = xr.Dataset({"accuracy": (dims, accuracy), "loss": (dims, loss)},
                    coords={k: np.asarray(v) for k, v in coords.items()})
    ds.attrs["name"] = "synthetic"
    return ds
