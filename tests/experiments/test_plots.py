"""Plots of sweep results: structure of the figures and the PNG files."""

import math

import numpy as np
import pytest

from byzdask.errors import ConfigurationError
from byzdask.experiments.analysis import synthetic_results, worst_case
from byzdask.experiments.plots import (
    plot_curves,
    plot_heatmaps,
    plot_worst_case,
    save_figure,
    write_plots,
)


@pytest.fixture(scope="module")
def ds():
    return synthetic_results(seeds=2)


def test_curves_one_panel_per_attack_one_line_per_rule(ds):
    fig = plot_curves(ds, cell={"f": 3, "alpha": 0.1})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["none", "signflip", "little"]
    for ax, attack in zip(axes, ["none", "signflip", "little"], strict=True):
        assert [line.get_label() for line in ax.get_lines()] == [
            "average", "average (nnm)", "cwtm", "cwtm (nnm)", "krum", "krum (nnm)"]
        assert len(ax.collections) == 6  # one band per rule
        line = ax.get_lines()[2]  # cwtm: the seed mean
        want = ds.accuracy.sel(aggregator="cwtm", pre_aggregator="none", attack=attack, f=3, alpha=0.1).mean("seed")
        np.testing.assert_allclose(line.get_ydata(), want.values)
    assert "f=3 alpha=0.1" in fig.get_suptitle() and "2 seeds" in fig.get_suptitle()
    assert len(fig.legends) == 1


def test_curves_subsets_and_layout(ds):
    fig = plot_curves(ds, "loss", cell={"f": 1, "alpha": math.inf}, rules=["cwtm"], attacks=["little"], band="minmax")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 1 and visible[0].get_ylabel() == "test loss"
    assert "alpha=iid" in fig.get_suptitle()
    wide = synthetic_results(seeds=1, attacks=("a", "b", "c", "d", "e"), f=(1,), alpha=(0.1,))
    fig = plot_curves(wide, columns=2)
    assert sum(ax.get_visible() for ax in fig.axes) == 5 and len(fig.axes) == 6


def test_curves_skip_failed_runs(ds):
    broken = ds.copy(deep=True)
    broken["accuracy"].loc[{"aggregator": "krum", "pre_aggregator": "nnm"}] = np.nan
    broken["accuracy"].loc[{"aggregator": "cwtm", "pre_aggregator": "none", "round": 20}] = np.nan
    fig = plot_curves(broken, cell={"f": 3, "alpha": 0.1})
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "krum (nnm)" not in labels
    assert len(fig.axes[0].get_lines()[labels.index("cwtm")].get_xdata()) == 4


def test_heatmaps_show_the_worst_case(ds):
    fig = plot_heatmaps(ds, metric="final")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["average", "average (nnm)", "cwtm", "cwtm (nnm)", "krum",
                                                 "krum (nnm)"]
    cwtm = panels[2]
    grid = cwtm.get_images()[0].get_array()
    assert grid.shape == (2, 2)
    assert [t.get_text() for t in cwtm.get_yticklabels()] == ["0.1", "iid"]
    assert [t.get_text() for t in cwtm.get_xticklabels()] == ["1", "3"]
    wc = worst_case(ds, metric="final").value.sel(aggregator="cwtm", pre_aggregator="none")
    np.testing.assert_allclose(grid, wc.transpose("alpha", "f").values)
    assert sorted(t.get_text() for t in cwtm.texts) == sorted(f"{v:.2f}" for v in wc.values.ravel())


def test_heatmap_marks_failed_cells_and_needs_extra_dims_picked():
    ds = synthetic_results(seeds=1, extra={"momentum": [0.0, 0.9]})
    ds["accuracy"].loc[{"aggregator": "krum", "f": 3, "alpha": 0.1}] = np.nan
    with pytest.raises(ConfigurationError, match=r"pick one value of \['momentum'\]"):
        plot_heatmaps(ds)
    fig = plot_heatmaps(ds, cell={"momentum": 0.9}, rules=["krum"])
    assert "failed" in [t.get_text() for t in fig.axes[0].texts]
    assert "momentum=0.9" in fig.get_suptitle()


def test_worst_case_bars(ds):
    fig = plot_worst_case(ds, metric="best")
    ax = fig.axes[0]
    assert len(ax.patches) == 6 * 4  # rules x cells
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["f=1 alpha=0.1", "f=1 alpha=iid",
                                                                   "f=3 alpha=0.1", "f=3 alpha=iid"]
    single = plot_worst_case(ds, cell={"f": 3, "alpha": 0.1}).axes[0]
    labels = [t.get_text() for t in single.get_yticklabels()]
    widths = [p.get_width() for p in single.patches]
    assert widths == sorted(widths) and labels[-1] == "krum (nnm)"
    assert all(t.get_text().endswith("(little)") for t in single.texts)


def test_errors(ds):
    with pytest.raises(ConfigurationError, match=r"pick one value of \['alpha', 'f'\]"):
        plot_curves(ds)
    with pytest.raises(ConfigurationError, match="cannot select"):
        plot_curves(ds, cell={"momentum": 0})
    with pytest.raises(ConfigurationError, match="no such cell"):
        plot_curves(ds, cell={"f": 5, "alpha": 0.1})
    with pytest.raises(ConfigurationError, match=r"rule \['bulyan'\] not in the results"):
        plot_curves(ds, cell={"f": 1, "alpha": 0.1}, rules=["bulyan"])


def test_write_plots_png(tmp_path):
    small = synthetic_results(seeds=1, f=(1, 3), alpha=(0.5,), aggregators=("cwtm",), pre_aggregators=("none",),
                              attacks=("little",))
    paths = write_plots(small, tmp_path, metrics=("best",))
    assert sorted(p.name for p in paths) == ["curves_f=1_alpha=0.5.png", "curves_f=3_alpha=0.5.png",
                                             "heatmap_best.png", "worst_case_best.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert save_figure(plot_worst_case(small), tmp_path / "sub" / "w.png").exists()


def test_report_cli_prints_tables_and_writes_plots(tmp_path):
    from click.testing import CliRunner

    from byzdask.cli import main
    from byzdask.experiments.sweep import save_results

    small = synthetic_results(aggregators=("average", "cwtm"), pre_aggregators=("none",), attacks=("none", "little"),
                              f=(2,), alpha=(math.inf,), seeds=2)
    small["status"] = small.accuracy.isel(round=0, drop=True).astype(str).where(False, "ok")
    save_results(small, tmp_path / "sweep" / "results.nc")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "sweep"), "--metric", "best"])
    assert result.exit_code == 0, result.output
    assert "runs: 8 ok" in result.output
    assert "worst case over attacks, best accuracy (mean over seeds):" in result.output
    assert "per attack, best accuracy (mean over seeds), f=2 alpha=iid:" in result.output
    report = tmp_path / "sweep" / "report"
    assert sorted(p.name for p in report.iterdir()) == [
        "curves_f=2_alpha=iid.png", "heatmap_best.png", "per_attack_best.csv", "ranking_best.csv",
        "worst_case_best.csv", "worst_case_best.png"]
    table = (report / "worst_case_best.csv").read_text().splitlines()
    assert table[0] == "rule,f=2 alpha=iid" and table[2].startswith("cwtm,")

    no_plots = CliRunner().invoke(main, ["report", str(tmp_path / "sweep" / "results.nc"), "--no-plots",
                                         "--out", str(tmp_path / "tables"), "--variable", "loss"])
    assert no_plots.exit_code == 0, no_plots.output
    assert "worst case over attacks, final loss" in no_plots.output
    assert not list((tmp_path / "tables").glob("*.png"))
    bad = CliRunner().invoke(main, ["report", str(tmp_path / "sweep"), "--variable", "acc", "--no-plots"])
    assert bad.exit_code != 0 and "variable must be one of" in bad.output
