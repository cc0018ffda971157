"""Hostile configurations and inputs (issue 18, items 1, 3 and 4): fail fast and clearly, or hold.

Each test names the finding of the issue it covers.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import dask
import numpy as np
import pytest
from click.testing import CliRunner

from byzdask.aggregators import (
    SMEA,
    CoordinateWiseTrimmedMean,
    Krum,
    MinimumDiameterAveraging,
    MoNNA,
    MultiKrum,
)
from byzdask.cli import main
from byzdask.errors import ConfigurationError, ToleranceError
from byzdask.pre_aggregators import NearestNeighborMixing
from byzdask.train import TrainConfig, run_training


# -- item 3: min_n / max_f in closed form, f and n checked first ---------------------------------
def test_min_n_answers_for_any_f():
    """`CoordinateWiseTrimmedMean(f=10**7)` took 23 s and f=10**18 never returned."""
    assert CoordinateWiseTrimmedMean(f=10**18).min_n(10**18) == 2 * 10**18 + 1
    assert Krum(f=0).min_n(10**18) == 2 * 10**18 + 3
    with pytest.raises(ToleranceError, match=f"needs n >= {2 * 10**18 + 1}"):
        CoordinateWiseTrimmedMean(f=10**18).aggregate(np.zeros((5, 3)))


def test_train_refuses_huge_f_before_any_work():
    """`byzdask train -f 1000000000000` hung."""
    result = CliRunner().invoke(main, ["train", "-f", "1000000000000", "--cluster", "local", "--rounds", "1"])
    assert result.exit_code != 0
    assert "needs n >= 2000000000001 for f=1000000000000; got n=13" in result.output


def test_sweep_grid_with_huge_f_is_skipped_without_allocating():
    """A sweep with f=10^12 tried to allocate 7.28 TiB."""
    from byzdask.experiments.config import SweepConfig

    cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1, 10**12]},
                                 "training": {"honest": 5, "rounds": 1}})
    reasons = [p.skip_reason for p in cfg.points()]
    assert reasons[0] is None and "this point has f=1000000000000" in reasons[1]


# -- item 4: edges -------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, name", [("--lr", "nan", "lr"), ("--lr", "inf", "lr"), ("--lr", "-1", "lr"),
                                                 ("--weight-decay", "nan", "weight_decay")])
def test_learning_rate_and_weight_decay_are_checked(option, value, name):
    """`--lr nan|inf` and `--weight-decay nan` passed validation and failed as '13 of 13 ... NaN'."""
    result = CliRunner().invoke(main, ["train", option, value, "--cluster", "none", "--rounds", "1"])
    assert result.exit_code != 0 and f"{name} must be a finite number" in result.output


def test_json_path_checked_before_training(tmp_path):
    """`--json` to an unwritable path failed with a traceback after training."""
    bad = tmp_path / "missing-dir" / "run.json"
    result = CliRunner().invoke(main, ["train", "--json", str(bad), "--cluster", "none", "--rounds", "1"])
    assert result.exit_code != 0 and "cannot write" in result.output
    assert "final test accuracy" not in result.output  # refused before training


def test_list_rejects_a_negative_n():
    """`list --n -5` was accepted."""
    result = CliRunner().invoke(main, ["list", "--n", "-5"])
    assert result.exit_code != 0 and "-5" in result.output


def test_report_on_a_corrupt_file_names_it(tmp_path):
    """`byzdask report corrupt.nc` gave a netCDF traceback."""
    path = tmp_path / "corrupt.nc"
    path.write_bytes(b"not a netCDF file")
    result = CliRunner().invoke(main, ["report", str(path)])
    assert result.exit_code != 0 and str(path) in result.output and "Traceback" not in result.output


def test_krum_preconditions_with_the_librarys_error():
    """`Krum(f=0)` on one vector failed inside numpy ('k must satisfy ...')."""
    for rule in (Krum(f=0), MultiKrum(f=0)):
        with pytest.raises(ToleranceError, match="needs n >= 3 for f=0; got n=1"):
            rule.aggregate(np.ones((1, 3)))
        with pytest.raises(ToleranceError, match="got n=2"):
            rule.aggregate(np.ones((2, 3)))


def test_smea_refuses_a_search_above_its_budget():
    """SMEA grew exponentially with no cap (n=30, f=10: 55 s)."""
    x = np.random.default_rng(0).normal(size=(30, 4))
    with pytest.raises(ConfigurationError, match=r"C\(30, 10\) = 3e\+07 subsets.*smea-max-subsets"):
        SMEA(f=10).aggregate(x)
    with dask.config.set({"byzdask.kernels.smea-max-subsets": 10}):
        SMEA(f=1).aggregate(x[:6])  # C(6, 1) = 6: within the budget
        with pytest.raises(ConfigurationError, match="C\\(7, 2\\) = 21"):
            SMEA(f=2).aggregate(x[:7])


def test_mda_on_a_thousand_vectors():
    """MDA raised RecursionError at n >= ~1000."""
    x = np.random.default_rng(1).normal(size=(1000, 3))
    x[:3] += 1e3
    out = MinimumDiameterAveraging(f=3).aggregate(x)
    assert np.abs(out - x[3:].mean(axis=0)).max() < 1e-9


def _near_tie_float32() -> tuple[np.ndarray, np.ndarray]:
    """Rows 5 and 6 tie within float32 round-off; the exact answer would keep 6 (closer by 2e-6)."""
    x = np.zeros((7, 3), dtype=np.float32)
    x[1, 1], x[2, 1], x[3, 2], x[4, 2] = 1.0, -1.0, 1.0, -1.0
    x[5, 0] = 10.0
    x[6, 0] = -10.0 * (1.0 - 1e-6)
    return x, x[:6].astype(np.float64).mean(axis=0)


@pytest.mark.parametrize("rule", [MoNNA(f=1), MinimumDiameterAveraging(f=1), SMEA(f=1)],
                         ids=lambda r: type(r).__name__)
def test_float32_ties_go_to_the_lower_index(rule):
    """float32 ties broke the lower-index rule (TIE_RTOL=1e-12 was below float32 round-off)."""
    x, expected = _near_tie_float32()
    np.testing.assert_allclose(rule.aggregate(x), expected, atol=1e-6)


def test_nnm_float32_ties_go_to_the_lower_index():
    x, expected = _near_tie_float32()
    np.testing.assert_allclose(NearestNeighborMixing(f=1).pre_aggregate(x)[0], expected, atol=1e-6)


def test_tls_extra_brings_cryptography():
    """`ActorPoolConfig(security=True)` raised ImportError: cryptography was in no extra."""
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "cryptography" in cfg["options.extras_require"]["tls"]


# -- item 1, end to end --------------------------------------------------------------------------
@pytest.mark.parametrize("aggregator, pre", [("krum", ()), ("gm", ()), ("cwtm", ("nnm",))])
def test_training_under_huge_gaussian_noise(aggregator, pre):
    """`gaussian` sigma=1e20 ended Krum at 0.13-0.15, NNM+CWTM at 0.16, and made GM's model NaN."""
    common = dict(honest=7, byzantine=2, f=2, rounds=15, eval_every=15, cluster="none", aggregator=aggregator,
                  pre_aggregators=pre)
    clean = run_training(TrainConfig(attack="none", **common), progress=False)["final_accuracy"]
    attacked = run_training(TrainConfig(attack="gaussian", attack_kwargs={"sigma": 1e20}, **common),
                            progress=False)["final_accuracy"]
    assert attacked >= clean - 0.05, (aggregator, pre, clean, attacked)


def test_unreachable_scheduler_is_named():
    """`--cluster tcp://127.0.0.1:1` gave a traceback after 30 s."""
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(ConfigurationError, match="cannot reach the cluster 'tcp://127.0.0.1:1'"):
            run_training(TrainConfig(cluster="tcp://127.0.0.1:1", rounds=1), progress=False)
