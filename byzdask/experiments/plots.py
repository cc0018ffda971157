"""Plots of sweep results: accuracy curves, worst-case heatmaps, worst-case bar charts.

Every function returns a :class:`matplotlib.figure.Figure` built without :mod:`matplotlib.pyplot`
(no global figure state, nothing to close, safe from threads, and no display needed: PNGs are
rendered by the Agg canvas). A notebook shows a returned figure inline (after
``%matplotlib inline``); :func:`save_figure` writes it as PNG; :func:`write_plots` writes the
whole set that ``byzdask report`` produces.

The numbers are those of :mod:`byzdask.experiments.analysis`: curves are means over seeds with a
band over seeds; heatmaps and bars show the worst case over attacks of the seed-averaged final
or best value.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from byzdask.errors import ConfigurationError
from byzdask.experiments import analysis

__all__ = ["plot_curves", "plot_heatmaps", "plot_worst_case", "save_figure", "write_plots"]

logger = logging.getLogger(__name__)

_LABELS = {"accuracy": "test accuracy", "worst_accuracy": "worst honest accuracy", "loss": "test loss",
           "consensus_distance": "consensus distance"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _rule_colors(rules: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(rules) <= 10 else "tab20"]
    return {rule: cmap(i % cmap.N) for i, rule in enumerate(rules)}


def _select_cell(da: xr.DataArray, cell: dict[Hashable, Any] | None, keep: Sequence[str] = ()) -> xr.DataArray:
    """Select ``cell`` and check that no other cell dimension (outside ``keep``) has several values."""
    if cell:
        unknown = sorted(str(d) for d in cell if d not in da.dims)
        if unknown:
            raise ConfigurationError(f"cannot select {unknown}: the results have dimensions {tuple(map(str, da.dims))}")
        try:
            da = da.sel(cell)
        except KeyError as exc:
            choices = {str(d): da[d].values.tolist() for d in cell}
            raise ConfigurationError(f"no such cell {cell!r}; the results hold {choices}") from exc
    several = {str(d): da[d].values.tolist() for d in analysis.cell_dims(da) if d not in keep and da.sizes[d] > 1}
    if several:
        raise ConfigurationError(f"pick one value of {sorted(several)} with cell=..., e.g. cell="
                                 f"{ {d: v[0] for d, v in several.items()} }; the results hold {several}")
    return da.squeeze([d for d in analysis.cell_dims(da) if d not in keep])


def _fixed_label(da: xr.DataArray, skip: Sequence[str] = ()) -> str:
    """``"f=3 alpha=iid"`` from the scalar cell coordinates left after a selection."""
    fixed = {name: coord.item() for name, coord in da.coords.items()
             if coord.ndim == 0 and name not in (*analysis.RULE_DIMS, "attack", "seed", "round", *skip)}
    return "" if not fixed else analysis.cell_label(fixed)


def _pick(da: xr.DataArray, dim: str, values: Sequence[str] | None) -> xr.DataArray:
    if values is None:
        return da
    present = [str(v) for v in da[dim].values]
    missing = sorted(set(values) - set(present))
    if missing:
        raise ConfigurationError(f"{dim} {missing} not in the results; they hold {present}")
    return da.sel({dim: list(values)})


def plot_curves(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    *,
    cell: dict[Hashable, Any] | None = None,
    rules: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    band: str = "ci95",
    columns: int = 3,
) -> Any:
    """Curves of ``variable`` against the round, one panel per attack, one line per rule.

    Lines are means over seeds; the shaded band is :func:`~byzdask.experiments.analysis.seed_band`
    (95% confidence interval of the mean by default).

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        Sweep results.
    variable : str
        ``accuracy``, ``loss``, ``worst_accuracy``...
    cell : dict, optional
        One value of each cell dimension that has several, e.g. ``{"f": 3, "alpha": 0.1}``.
    rules, attacks : sequence of str, optional
        Only these rules (labels such as ``"cwtm (nnm)"``) / attacks.
    band : {"ci95", "std", "minmax"}
    columns : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ConfigurationError
        A cell dimension with several values and none picked, or unknown rules / attacks.

    Examples
    --------
    >>> from byzdask.experiments.analysis import synthetic_results
    >>> fig = plot_curves(synthetic_results(seeds=2), cell={"f": 3, "alpha": 0.1})
    >>> [ax.get_title() for ax in fig.axes]
    ['none', 'signflip', 'little']
    """
    da = analysis._variable(ds, variable) if isinstance(ds, xr.Dataset) else ds
    name = str(da.name or variable)
    da = analysis.stack_rules(_select_cell(da, cell))
    da = _pick(_pick(da, "rule", rules), "attack", attacks)
    if "attack" not in da.dims:
        da = da.expand_dims(attack=[str(da.coords["attack"].item()) if "attack" in da.coords else "all"])
    all_rules = [str(r) for r in da.rule.values]
    colors = _rule_colors(all_rules)
    lower, upper = analysis.seed_band(da, band)
    mean = analysis.seed_mean(da)
    n_attacks = da.sizes["attack"]
    ncols = max(1, min(columns, n_attacks))
    nrows = math.ceil(n_attacks / ncols)
    fig = _figure(4.2 * ncols, 3.2 * nrows + 0.5 + 0.25 * math.ceil(len(all_rules) / 4))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    rounds = da["round"].values
    for i, attack in enumerate(da.attack.values):
        ax = axes.flat[i]
        for rule in all_rules:
            sel = {"attack": attack, "rule": rule}
            y = mean.sel(sel).values
            finite = np.isfinite(y)
            if not finite.any():
                continue
            ax.plot(rounds[finite], y[finite], color=colors[rule], label=rule, lw=1.6, marker="o", ms=2.5)
            ax.fill_between(rounds[finite], lower.sel(sel).values[finite], upper.sel(sel).values[finite],
                            color=colors[rule], alpha=0.18, lw=0)
        ax.set_title(str(attack))
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[n_attacks:]:
        ax.set_visible(False)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[-1]:
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    for ax in axes[:, 0]:
        ax.set_ylabel(_LABELS.get(name, name))
    fixed = _fixed_label(da)
    seeds = da.sizes.get("seed", 1)
    fig.suptitle(f"{_LABELS.get(name, name)}: mean over {seeds} seed{'s' * (seeds != 1)}, band {band}"
                 + (f" ({fixed})" if fixed else ""))
    handles, labels = _collect_handles(axes)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, max(1, len(labels))), frameon=False)
    return fig


def _collect_handles(axes: Any) -> tuple[list[Any], list[str]]:
    seen: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)


def _axis_labels(dim: str, values: np.ndarray) -> list[str]:
    return [analysis.cell_label({dim: v}).split("=", 1)[1] for v in values]


def plot_heatmaps(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    cell: dict[Hashable, Any] | None = None,
    rules: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    columns: int = 4,
    cmap: str = "viridis",
) -> Any:
    """Worst case over attacks on an ``f`` x heterogeneity (``alpha``) grid, one panel per rule.

    Rows are ``alpha`` from the most heterogeneous (smallest) at the top to iid at the bottom;
    columns are ``f``. All panels share one colour scale; each square is annotated.

    Parameters
    ----------
    ds, variable, metric
        As in :func:`~byzdask.experiments.analysis.worst_case`.
    cell : dict, optional
        One value of each cell dimension other than ``f`` and ``alpha`` that has several.
    rules, attacks : sequence of str, optional
        Only these rules / attacks.
    columns : int
        Panels per row.
    cmap : str
        A matplotlib colormap (reversed automatically for a loss).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from byzdask.experiments.analysis import synthetic_results
    >>> fig = plot_heatmaps(synthetic_results(seeds=1))
    >>> [ax.get_title() for ax in fig.axes][:3]
    ['average', 'average (nnm)', 'cwtm']
    """
    da = analysis._variable(ds, variable) if isinstance(ds, xr.Dataset) else ds
    name = str(da.name or variable)
    da = _select_cell(da, cell, keep=("f", "alpha"))
    for dim, default in (("f", 0), ("alpha", math.inf)):
        if dim not in da.dims:
            value = da.coords[dim].item() if dim in da.coords else default
            da = da.drop_vars(dim, errors="ignore").expand_dims({dim: [value]})
    wc = analysis.worst_case(da, name, metric, attacks=attacks)
    value = _pick(analysis.stack_rules(wc["value"]), "rule", rules).transpose("rule", "alpha", "f")
    value = value.sortby("alpha").sortby("f")
    all_rules = [str(r) for r in value.rule.values]
    ncols = max(1, min(columns, len(all_rules)))
    nrows = math.ceil(len(all_rules) / ncols)
    n_alpha, n_f = value.sizes["alpha"], value.sizes["f"]
    panel_w, panel_h = max(2.4, 0.75 * n_f + 1.2), max(1.8, 0.5 * n_alpha + 1.1)
    fig = _figure(panel_w * ncols + 1.2, panel_h * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    finite = value.values[np.isfinite(value.values)]
    higher = analysis.higher_is_better(name)
    if higher and name.endswith("accuracy"):
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    colormap = cmap if higher else f"{cmap}_r"
    image = None
    for i, rule in enumerate(all_rules):
        ax = axes.flat[i]
        grid = value.sel(rule=rule).values
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=colormap, vmin=vmin, vmax=vmax, aspect="auto")
        for (r, c), v in np.ndenumerate(grid):
            text = "failed" if not np.isfinite(v) else f"{v:.2f}"
            shade = (v - vmin) / (vmax - vmin) if np.isfinite(v) and vmax > vmin else 0.0
            dark = shade < 0.6 if higher else shade > 0.4
            ax.text(c, r, text, ha="center", va="center", fontsize=9,
                    color="white" if np.isfinite(v) and dark else "black")
        ax.set_xticks(range(n_f), _axis_labels("f", value.f.values))
        ax.set_yticks(range(n_alpha), _axis_labels("alpha", value.alpha.values))
        ax.set_title(rule, fontsize=10)
        ax.set_xlabel("f")
        ax.set_ylabel("alpha")
    for ax in axes.flat[len(all_rules):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.9, label=f"worst case ({metric})")
    fixed = _fixed_label(value, skip=("f", "alpha"))
    fig.suptitle(f"worst case over attacks of the {metric} {_LABELS.get(name, name)}"
                 + (f" ({fixed})" if fixed else ""))
    return fig


def plot_worst_case(
    ds: xr.Dataset | xr.DataArray,
    variable: str = "accuracy",
    metric: str = "best",
    *,
    cell: dict[Hashable, Any] | None = None,
    attacks: Sequence[str] | None = None,
) -> Any:
    """Horizontal bars of the worst case over attacks per rule; one bar colour per cell.

    With a single cell each bar is labelled with its value and the attack that reached it.
    Rules are sorted by their mean worst case (best on top).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from byzdask.experiments.analysis import synthetic_results
    >>> fig = plot_worst_case(synthetic_results(seeds=1), cell={"f": 3, "alpha": 0.1})
    >>> fig.axes[0].get_yticklabels()[-1].get_text()
    'krum (nnm)'
    """
    da = analysis._variable(ds, variable) if isinstance(ds, xr.Dataset) else ds
    name = str(da.name or variable)
    if cell:
        da = analysis._select(da, cell)
    table = analysis.worst_case_table(da, name, metric, attacks=attacks)
    attacks_table = analysis.worst_case_table(da, name, metric, attacks=attacks, with_attack=True)
    higher = analysis.higher_is_better(name)
    order = table.mean(axis=1).sort_values(ascending=higher, na_position="first").index
    table, attacks_table = table.loc[order], attacks_table.loc[order]
    n_rules, n_cells = table.shape
    fig = _figure(7.5, max(2.5, 0.32 * n_rules * max(1, n_cells) ** 0.6 + 1.4))
    ax = fig.subplots()
    height = 0.8 / n_cells
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for j, column in enumerate(table.columns):
        y = np.arange(n_rules) + 0.4 - height * (j + 0.5)  # first cell on top, as in the legend
        values = table[column].to_numpy(dtype=float)
        ax.barh(y, np.nan_to_num(values), height=height * 0.92, color=cmap(j % 10),
                label=None if n_cells == 1 else column)
        if n_cells == 1:
            for yy, text in zip(y, attacks_table[column], strict=True):
                ax.text(0.01, yy, text, va="center", ha="left", fontsize=8, color="white",
                        transform=ax.get_yaxis_transform())
    ax.set_yticks(np.arange(n_rules), list(table.index))
    ax.set_xlabel(f"worst case over attacks of the {metric} {_LABELS.get(name, name)}")
    if higher and name.endswith("accuracy"):
        ax.set_xlim(0, 1)
    ax.grid(True, axis="x", alpha=0.3)
    if n_cells > 1:
        ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
    title = "worst case over attacks" + (f" ({table.columns[0]})" if n_cells == 1 and table.columns[0] != "all"
                                         else "")
    ax.set_title(title)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (through the Agg canvas; no display needed); return the path.

    Examples
    --------
    >>> import tempfile, os
    >>> from byzdask.experiments.analysis import synthetic_results
    >>> path = save_figure(plot_worst_case(synthetic_results(seeds=1)), os.path.join(tempfile.mkdtemp(), "w.png"))
    >>> open(path, "rb").read(4) == b"\\x89PNG"
    True
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_") or "all"


def write_plots(
    ds: xr.Dataset,
    out: str | os.PathLike,
    variable: str = "accuracy",
    *,
    metrics: Sequence[str] = ("final", "best"),
) -> list[Path]:
    """Write the plots of a sweep as PNG files under ``out``; return their paths.

    ``curves_<cell>.png`` (one per cell: f, alpha and any further grid dimension),
    ``heatmap_<metric>[_<cell>].png`` (one per value of the dimensions other than f and
    alpha), ``worst_case_<metric>.png``.

    Examples
    --------
    >>> import tempfile
    >>> from byzdask.experiments.analysis import synthetic_results
    >>> ds = synthetic_results(aggregators=["cwtm"], pre_aggregators=["none"], seeds=1, f=[1], alpha=[0.1])
    >>> sorted(p.name for p in write_plots(ds, tempfile.mkdtemp(), metrics=["best"]))
    ['curves_f=1_alpha=0.1.png', 'heatmap_best.png', 'worst_case_best.png']
    """
    da = analysis._variable(ds, variable)
    out = Path(out)
    written = []
    for cell in analysis.iter_cells(da):
        fig = plot_curves(da, variable, cell=cell)
        written.append(save_figure(fig, out / f"curves_{_slug(analysis.cell_label(cell))}.png"))
    other = [d for d in analysis.cell_dims(da) if d not in ("f", "alpha")]
    for metric in metrics:
        for cell in analysis.iter_cells(da, other):
            suffix = f"_{_slug(analysis.cell_label(cell))}" if cell else ""
            fig = plot_heatmaps(da, variable, metric, cell=cell or None)
            written.append(save_figure(fig, out / f"heatmap_{metric}{suffix}.png"))
        fig = plot_worst_case(da, variable, metric)
        written.append(save_figure(fig, out / f"worst_case_{metric}.png"))
    logger.info("wrote %d plots to %s", len(written), out)
    return written
