"""Reductions of sweep results, checked against plain loops over the numbers."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from byzdask.errors import ConfigurationError, InputError
from byzdask.experiments import analysis
from byzdask.experiments.analysis import (
    attack_table,
    cell_label,
    ranking,
    reduce_rounds,
    run_metric,
    seed_band,
    stack_rules,
    synthetic_results,
    worst_case,
    worst_case_table,
)


# -- slow, obvious references -------------------------------------------------------------------
def ref_run_metric(curves, metric, higher=True):
    """curves: (seeds, rounds) array with NaN; mean over finite seeds, then last/best round."""
    mean = [np.mean([c[r] for c in curves if not np.isnan(c[r])]) if any(not np.isnan(c[r]) for c in curves)
            else np.nan for r in range(curves.shape[1])]
    if metric == "final":
        return mean[-1]
    finite = [m for m in mean if not np.isnan(m)]
    if not finite:
        return np.nan
    return max(finite) if higher else min(finite)


def ref_worst(per_attack, skip_failed=False):
    """per_attack: {attack: value}; min over real attacks, NaN when one is missing."""
    real = {a: v for a, v in per_attack.items() if a != "none"} or per_attack
    if any(np.isnan(v) for v in real.values()) and not skip_failed:
        return np.nan, ""
    finite = {a: v for a, v in real.items() if not np.isnan(v)}
    if not finite:
        return np.nan, ""
    attack = min(finite, key=lambda a: (finite[a], list(real).index(a)))
    return finite[attack], attack


def small_dataset(values, attacks=("none", "signflip", "little"), rules=("avg", "cwtm")):
    """values: (rules, attacks, f=2, seeds, rounds)."""
    return xr.Dataset(
        {"accuracy": (("aggregator", "attack", "f", "seed", "round"), values)},
        coords={"aggregator": list(rules), "attack": list(attacks), "f": [1, 3],
                "seed": list(range(values.shape[3])), "round": [0, 5, 10][: values.shape[4]]},
    )


# -- per-run metrics ------------------------------------------------------------------------------
def test_hand_computed_final_and_best():
    # two seeds, three rounds: mean curve [0.5, 0.8, 0.7]
    da = xr.DataArray([[0.4, 0.9, 0.6], [0.6, 0.7, 0.8]], dims=("seed", "round"), coords={"round": [0, 5, 10]})
    assert float(run_metric(da, metric="final")) == pytest.approx(0.7)
    assert float(run_metric(da, metric="best")) == pytest.approx(0.8)  # best of the mean, not mean of bests (0.85)


def test_best_of_loss_is_the_minimum():
    ds = xr.Dataset({"loss": (("seed", "round"), [[2.0, 0.5, 1.0]])})
    assert float(run_metric(ds, "loss", "best")) == 0.5


def test_unevaluated_rounds_are_dropped_before_final():
    da = xr.DataArray([[0.2, np.nan, 0.6, np.nan], [0.3, np.nan, 0.5, np.nan]], dims=("run", "round"))
    assert reduce_rounds(da, "final").values.tolist() == [0.6, 0.5]


def test_failed_run_stays_nan_and_failed_seed_is_skipped():
    values = np.full((2, 2, 3), 0.5)  # (attack, seed, round)
    values[0, :, :] = np.nan  # every seed of attack 0 failed
    values[1, 0, :] = np.nan  # one seed of attack 1 failed
    values[1, 1, :] = [0.1, 0.2, 0.3]
    da = xr.DataArray(values, dims=("attack", "seed", "round"), coords={"attack": ["a", "b"]})
    out = run_metric(da, metric="final")
    assert np.isnan(out.sel(attack="a"))
    assert float(out.sel(attack="b")) == pytest.approx(0.3)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["final", "best"]), st.booleans())
def test_worst_case_matches_reference(seed, metric, skip_failed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (2, 3, 2, 3, 3))
    values[rng.uniform(size=values.shape[:4]) < 0.15] = np.nan  # failed runs (whole curves)
    ds = small_dataset(values)
    wc = worst_case(ds, metric=metric, skip_failed=skip_failed)
    for r, rule in enumerate(ds.aggregator.values):
        for k, f in enumerate(ds.f.values):
            per_attack = {str(a): ref_run_metric(values[r, i, k], metric) for i, a in enumerate(ds.attack.values)}
            want, attack = ref_worst(per_attack, skip_failed)
            got = wc.sel(aggregator=rule, f=f)
            if np.isnan(want):
                assert np.isnan(got.value) and got.attack.item() == ""
            else:
                assert float(got.value) == pytest.approx(want)
                assert got.attack.item() == attack


def test_worst_case_of_loss_is_the_maximum():
    values = np.asarray([[[[[1.0]]], [[[3.0]]], [[[2.0]]]]])[:, :, [0, 0]]  # (rule, attack, f, seed, round)
    ds = xr.Dataset({"loss": small_dataset(values, rules=("avg",)).accuracy})
    wc = worst_case(ds, "loss", "final")
    assert wc.value.values.ravel().tolist() == [3.0, 3.0] and wc.attack.values.ravel().tolist() == ["signflip", "signflip"]


def test_none_is_left_out_unless_alone_or_named():
    values = np.ones((1, 3, 2, 1, 1))
    values[0, 0] = 0.1  # the clean baseline is the lowest (noise): not an attack
    ds = small_dataset(values, rules=("avg",))
    assert worst_case(ds, metric="final").value.values.ravel().tolist() == [1.0, 1.0]
    named = worst_case(ds, metric="final", attacks=["none", "little"])
    assert named.attack.values.ravel().tolist() == ["none", "none"]
    alone = small_dataset(values[:, :1], attacks=("none",), rules=("avg",))
    assert worst_case(alone, metric="final").value.values.ravel().tolist() == [0.1, 0.1]


def test_tables_agree_with_worst_case():
    ds = synthetic_results(seeds=2)
    wc = worst_case(ds, metric="final")
    table = worst_case_table(ds, metric="final")
    assert list(table.columns) == ["f=1 alpha=0.1", "f=1 alpha=iid", "f=3 alpha=0.1", "f=3 alpha=iid"]
    assert float(table.loc["krum (nnm)", "f=3 alpha=0.1"]) == pytest.approx(
        float(wc.value.sel(aggregator="krum", pre_aggregator="nnm", f=3, alpha=0.1)))
    per_attack = attack_table(ds, metric="final")
    assert list(per_attack.index.names) == ["rule", "f", "alpha"]
    assert list(per_attack.columns) == ["none", "signflip", "little", "worst", "worst_attack"]
    row = per_attack.loc[("cwtm", 3, math.inf)]
    assert row["worst"] == pytest.approx(min(row["signflip"], row["little"]))
    assert row["worst"] == pytest.approx(float(wc.value.sel(aggregator="cwtm", pre_aggregator="none", f=3,
                                                            alpha=math.inf)))
    labelled = worst_case_table(ds, metric="final", with_attack=True)
    assert labelled.loc["cwtm", "f=3 alpha=iid"].endswith("(little)")


def test_attack_table_of_one_cell_has_only_the_varying_levels():
    ds = synthetic_results(seeds=1)
    one = attack_table(ds, cell={"f": 3, "alpha": 0.1})
    assert one.index.name == "rule" and len(one) == 6
    two = attack_table(ds, cell={"f": 3})
    assert list(two.index.names) == ["rule", "alpha"]
    assert two.loc[("cwtm", 0.1), "worst"] == pytest.approx(one.loc["cwtm", "worst"])


def test_extra_dimensions_are_cells():
    ds = synthetic_results(seeds=1, f=(1,), alpha=(0.1,), extra={"momentum": [0.0, 0.9]})
    assert analysis.cell_dims(ds.accuracy) == ["f", "alpha", "momentum"]
    table = worst_case_table(ds)
    assert list(table.columns) == ["f=1 alpha=0.1 momentum=0", "f=1 alpha=0.1 momentum=0.9"]
    assert list(attack_table(ds).index.names) == ["rule", "momentum"]
    assert len(ranking(ds)) == 6


def test_ranking_by_mean_worst_case_with_mean_rank():
    # x leads two cells by a hair and collapses in the third; y is a close second twice and
    # leads the third: x has the better mean rank, y the better mean worst case (the order).
    table = pd.DataFrame({"f1": [0.90, 0.89, 0.5], "f2": [0.90, 0.89, 0.5], "f3": [0.10, 0.80, 0.05]},
                         index=["x", "y", "z"])
    values = table.values[:, None, :, None, None] * np.ones((1, 2, 1, 1, 1))  # (rule, attack, f, seed, round)
    ds = xr.Dataset({"accuracy": (("aggregator", "attack", "f", "seed", "round"), values)},
                    coords={"aggregator": ["x", "y", "z"], "attack": ["signflip", "little"], "f": [1, 2, 3]})
    out = ranking(ds, metric="final")
    assert out.index.tolist() == ["y", "x", "z"]
    assert out.loc["x", "mean_rank"] == pytest.approx(4 / 3) and out.loc["y", "mean_rank"] == pytest.approx(5 / 3)
    assert out.loc["y", "mean_worst"] == pytest.approx((0.89 + 0.89 + 0.80) / 3)
    assert out.loc["x", "cells_won"] == 2 and out.loc["y", "cells_won"] == 1 and out.loc["z", "cells_won"] == 0
    assert out.loc["z", "min_worst"] == pytest.approx(0.05)
    assert out["cells"].tolist() == [3, 3, 3]
    loss = ranking(xr.Dataset({"loss": ds.accuracy}), "loss", "final")  # lower is better
    assert loss.index.tolist() == ["z", "x", "y"] and loss.loc["z", "min_worst"] == pytest.approx(0.5)


def test_stack_rules_labels_and_single_dimension():
    ds = synthetic_results(seeds=1)
    assert stack_rules(ds.accuracy).rule.values.tolist()[:2] == ["average", "average (nnm)"]
    only_agg = ds.accuracy.sel(pre_aggregator="none", drop=True)
    assert stack_rules(only_agg).rule.values.tolist() == ["average", "cwtm", "krum"]
    assert stack_rules(ds.accuracy.sel(aggregator="cwtm", drop=True)).rule.values.tolist() == ["?", "? (nnm)"]


def test_seed_band_ci95_against_reference():
    rng = np.random.default_rng(1)
    values = rng.uniform(size=(4, 3))
    lower, upper = seed_band(xr.DataArray(values, dims=("seed", "round")))
    half = 1.96 * values.std(axis=0, ddof=1) / math.sqrt(4)
    np.testing.assert_allclose(upper - lower, 2 * half)
    np.testing.assert_allclose((upper + lower) / 2, values.mean(axis=0))
    one_lower, one_upper = seed_band(xr.DataArray(values[:1], dims=("seed", "round")))
    np.testing.assert_allclose(one_lower, one_upper)


def test_cell_labels():
    assert cell_label({"f": 3, "alpha": math.inf, "momentum": 0.9}) == "f=3 alpha=iid momentum=0.9"
    labels = [cell_label(c) for c in analysis.iter_cells(synthetic_results(seeds=1).accuracy)]
    assert labels == ["f=1 alpha=0.1", "f=1 alpha=iid", "f=3 alpha=0.1", "f=3 alpha=iid"]


def test_generic_over_the_grid_shape():
    for aggs, pres, attacks in itertools.product([("cwtm",), ("cwtm", "krum")], [("none",), ("none", "nnm")],
                                                 [("little",), ("none", "signflip")]):
        ds = synthetic_results(aggregators=aggs, pre_aggregators=pres, attacks=attacks, seeds=1, f=(1,),
                               alpha=(math.inf,))
        assert worst_case_table(ds).shape == (len(aggs) * len(pres), 1)
        assert not worst_case_table(ds).isna().any().any()


# -- errors ---------------------------------------------------------------------------------------
def test_errors():
    ds = synthetic_results(seeds=1)
    with pytest.raises(ConfigurationError, match="metric must be one of"):
        run_metric(ds, metric="last")
    with pytest.raises(InputError, match="variable must be one of"):
        run_metric(ds, "acc")
    with pytest.raises(InputError, match="'round' dimension"):
        reduce_rounds(ds.accuracy.isel(round=0))
    with pytest.raises(InputError, match="'attack' dimension"):
        worst_case(ds.accuracy.isel(attack=0))
    with pytest.raises(ConfigurationError, match=r"attacks \['gaussian'\] are not in the results"):
        worst_case(ds, attacks=["gaussian"])
    with pytest.raises(ConfigurationError, match="band must be"):
        seed_band(ds.accuracy, "iqr")
    with pytest.raises(ConfigurationError, match="cannot select"):
        attack_table(ds, cell={"momentum": 0.9})
    with pytest.raises(ConfigurationError, match="no such cell"):
        attack_table(ds, cell={"f": 7})
    with pytest.raises(InputError, match="no round has a value"):
        reduce_rounds(ds.accuracy.where(False))
