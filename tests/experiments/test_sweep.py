"""Sweeps on a thread cluster: the Dataset's dims and coords, failures, resume, netCDF, determinism."""

import math

import numpy as np
import pytest
import xarray as xr

from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.errors import ConfigurationError
from byzdask.experiments import sweep as sweep_module
from byzdask.experiments.config import SweepConfig
from byzdask.experiments.sweep import (
    collect_results,
    load_results,
    run_point,
    run_sweep,
    save_results,
)

TINY = {"name": "tiny",
        "grid": {"aggregators": ["cwtm", "krum"], "attacks": ["signflip", "little"], "f": [1], "seeds": [0]},
        "training": {"honest": 4, "rounds": 3, "eval_every": 2, "batch_size": 16}}


@pytest.fixture(scope="module")
def pool():
    pool = ActorPool(ActorPoolConfig("thread", count=2), start_timeout=60, shutdown_timeout=30)
    pool.start_sync()
    try:
        yield pool
    finally:
        pool.shutdown_sync()


@pytest.fixture
def counted(monkeypatch):
    """Count the trainings that actually run (thread workers share this module)."""
    calls = []
    real = sweep_module._train

    def train(settings, eval_every):
        calls.append(dict(settings))
        if settings["aggregator"] == "krum" and settings["attack"] == "little" and calls_fail:
            raise RuntimeError("injected failure")
        return real(settings, eval_every)

    calls_fail = []
    monkeypatch.setattr(sweep_module, "_train", train)
    return calls, calls_fail


def test_tiny_sweep_returns_the_dataset(pool):
    ds = run_sweep(TINY, pool=pool, progress=False)
    assert ds.accuracy.dims == ("aggregator", "pre_aggregator", "attack", "f", "alpha", "seed", "round")
    assert list(ds.aggregator.values) == ["cwtm", "krum"] and list(ds.attack.values) == ["signflip", "little"]
    assert list(ds.pre_aggregator.values) == ["none"] and list(ds.f.values) == [1]
    assert math.isinf(float(ds.alpha.item())) and list(ds.seed.values) == [0]
    assert list(ds["round"].values) == [2, 3]
    assert set(ds.data_vars) == {"accuracy", "loss", "status", "error", "seconds", "run_key"}
    assert (ds.status == "ok").all() and (ds.error == "").all()
    assert np.isfinite(ds.accuracy).all() and np.isfinite(ds.loss).all()
    assert ((ds.accuracy >= 0) & (ds.accuracy <= 1)).all()
    assert SweepConfig.from_yaml(ds.attrs["config"]) == SweepConfig.from_dict(TINY)
    assert ds.attrs["runs_executed"] == 4 and ds.attrs["mode"] == "ps"
    assert pool.running  # a pool the caller started stays open


def test_failed_run_is_recorded_and_the_others_finish(pool, counted):
    calls, fail = counted
    fail.append(True)
    ds = run_sweep(TINY, pool=pool, progress=False)
    bad = ds.sel(aggregator="krum", attack="little").squeeze()
    assert str(bad.status.item()) == "failed"
    assert str(bad.error.item()) == "RuntimeError: injected failure"
    assert bad.accuracy.isnull().all()
    ok = ds.status.where(~((ds.aggregator == "krum") & (ds.attack == "little")), "ok")
    assert (ok == "ok").all() and int(ds.accuracy.notnull().sum()) == 3 * 2
    assert len(calls) == 4


def test_resume_skips_finished_runs(pool, counted, tmp_path):
    calls, fail = counted
    fail.append(True)
    first = run_sweep(TINY, pool=pool, out=tmp_path, progress=False)
    assert len(calls) == 4 and int((first.status == "failed").sum()) == 1
    assert len(list((tmp_path / "runs").glob("*.json"))) == 4
    assert (tmp_path / "results.nc").exists() and (tmp_path / "config.yaml").exists()

    again = run_sweep(TINY, pool=pool, out=tmp_path, progress=False, retry_failed=False)
    assert len(calls) == 4 and again.attrs["runs_executed"] == 0 and again.attrs["runs_resumed"] == 4
    xr.testing.assert_identical(again.accuracy, first.accuracy)

    fail.clear()  # the failed run now succeeds: only it runs again
    fixed = run_sweep(TINY, pool=pool, out=tmp_path, progress=False)
    assert len(calls) == 5 and calls[-1]["aggregator"] == "krum" and calls[-1]["attack"] == "little"
    assert (fixed.status == "ok").all()
    xr.testing.assert_identical(fixed.accuracy.sel(aggregator="cwtm"), first.accuracy.sel(aggregator="cwtm"))

    bigger = dict(TINY, grid=dict(TINY["grid"], seeds=[0, 1]))  # a grown grid reuses the stored runs
    grown = run_sweep(bigger, pool=pool, out=tmp_path, progress=False)
    assert len(calls) == 9 and grown.attrs["runs_resumed"] == 4
    xr.testing.assert_identical(grown.accuracy.sel(seed=[0]), fixed.accuracy)


def test_netcdf_round_trip(pool, tmp_path):
    cfg = dict(TINY, grid=dict(TINY["grid"], aggregators=["cwtm"], attacks=["signflip"], partitions=[0.5, "iid"],
                                momentum=[0.0, 0.9]))
    ds = run_sweep(cfg, pool=pool, progress=False)
    assert ds.accuracy.dims == ("aggregator", "pre_aggregator", "attack", "f", "alpha", "momentum", "seed", "round")
    path = save_results(ds, tmp_path / "out.nc")
    back = load_results(path)
    xr.testing.assert_identical(back, ds)
    assert back.status.dtype.kind in "UO" and str(back.status.values.ravel()[0]) == "ok"
    assert load_results(tmp_path / "out.nc").alpha.values.tolist() == [0.5, math.inf]
    with pytest.raises(ConfigurationError, match="no sweep results"):
        load_results(tmp_path / "missing.nc")


def test_same_seed_same_numbers(pool):
    spec = SweepConfig.from_dict(TINY).points()[1]
    direct = run_point(spec.settings)
    assert direct == {**run_point(spec.settings), "seconds": direct["seconds"], "worker": direct["worker"]}
    ds = run_sweep(TINY, pool=pool, progress=False)
    swept = ds.accuracy.sel(aggregator=spec.coords["aggregator"], attack=spec.coords["attack"]).values.ravel()
    assert swept.tolist() == [h["accuracy"] for h in direct["history"]]
    other = run_point({**spec.settings, "seed": 1})
    assert other["history"] != direct["history"]


def test_skipped_points_are_not_submitted(pool, counted):
    calls, _ = counted
    cfg = dict(TINY, grid=dict(TINY["grid"], attacks=["signflip"], f=[1, 2]))  # krum with f=2 needs n >= 8
    ds = run_sweep(cfg, pool=pool, progress=False)
    skipped = ds.sel(aggregator="krum", f=2).squeeze()
    assert str(skipped.status.item()) == "skipped"
    assert "krum tolerates at most f=1" in str(skipped.error.item())
    assert skipped.accuracy.isnull().all() and len(calls) == 3


def test_p2p_sweep_has_the_node_variables(pool):
    cfg = {"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1]},
           "training": {"mode": "p2p", "honest": 4, "rounds": 2, "eval_every": 1, "topology": "complete"}}
    echoed = []
    ds = run_sweep(cfg, client=pool.start_sync(), progress=False, echo=echoed.append)
    assert {"accuracy", "loss", "worst_accuracy", "consensus_distance"} <= set(ds.data_vars)
    assert (ds.worst_accuracy <= ds.accuracy + 1e-12).all() and np.isfinite(ds.consensus_distance).all()
    assert any(line.startswith("dashboard:") for line in echoed)


def test_collect_marks_missing_runs():
    ds = collect_results(SweepConfig.from_dict(TINY), {})
    assert (ds.status == "missing").all() and ds.accuracy.isnull().all()


def test_cluster_errors():
    with pytest.raises(ConfigurationError, match="a sweep runs on a cluster"):
        run_sweep(TINY, cluster="none", progress=False)
    with pytest.raises(ConfigurationError, match="unknown cluster"):
        run_sweep(TINY, cluster="carrier-pigeon", progress=False)
    with pytest.raises(ConfigurationError, match="pool must be an ActorPool"):
        run_sweep(TINY, pool=object(), progress=False)


def test_cli_sweep_runs_and_resumes(tmp_path):
    import yaml
    from click.testing import CliRunner

    from byzdask.cli import main

    cfg = dict(TINY, grid=dict(TINY["grid"], aggregators=["cwtm"]))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    args = ["sweep", str(path), "--cluster", "thread", "--workers", "2", "--out", str(out), "--no-progress"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "2 runs (2 to run, 0 resumed, 0 skipped)" in first.output and "dashboard:" in first.output
    assert "worst case over attacks" in first.output and "cwtm" in first.output
    assert load_results(out).sizes["attack"] == 2
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "2 runs (0 to run, 2 resumed, 0 skipped)" in again.output
    bad = CliRunner().invoke(main, ["sweep", str(path), "--cluster", "nowhere", "--out", str(tmp_path / "new")])
    assert bad.exit_code != 0 and "unknown cluster 'nowhere'" in bad.output
