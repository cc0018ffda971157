import math

import numpy as np
import pytest
from click.testing import CliRunner

from byzdask import registry
from byzdask.cli import main
from byzdask.demo import (
    NO_ATTACK,
    DemoRow,
    build_scenarios,
    demo_rows,
    format_rows,
    run_demo,
)
from byzdask.errors import ConfigurationError

N_HONEST, F, DIM = 9, 2, 48


@pytest.fixture(scope="module")
def table():
    return run_demo(n_honest=N_HONEST, n_byzantine=F, dim=DIM, seed=1)


@pytest.fixture(scope="module")
def inf_rows():
    rows, _ = demo_rows(n_honest=N_HONEST, n_byzantine=F, dim=DIM, seed=1, attacks=[NO_ATTACK, "inf"])
    return rows


def _table_lines(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rule "))
    return lines[start:]


def test_table_has_a_row_for_every_rule_and_attack(table):
    lines = _table_lines(table)
    body = [line for line in lines[2:] if not line.startswith("note:")]
    cells = {tuple(line.split()[:2]) for line in body}
    for rule in registry.AGGREGATORS:
        for attack in [NO_ATTACK, *registry.ATTACKS]:
            assert (rule, attack) in cells, f"missing row {rule} x {attack}"
    assert len(body) == len(registry.AGGREGATORS) * (1 + len(registry.ATTACKS))


def test_table_is_aligned(table):
    lines = _table_lines(table)
    header, rule_line = lines[0], lines[1]
    assert set(rule_line.replace(" ", "")) == {"-"}
    # right-aligned numeric columns end where their header ends
    end = header.index("distance to honest mean") + len("distance to honest mean")
    for line in lines[2:]:
        if line.startswith("note:"):
            continue
        assert line[end - 1] != " ", line


def test_every_rule_runs_on_the_baseline_and_stays_near_the_honest_mean(inf_rows):
    scen = build_scenarios(n_honest=N_HONEST, n_byzantine=F, dim=DIM, seed=1, attacks=[NO_ATTACK])[0]
    for row in inf_rows:
        if row.attack == NO_ATTACK:
            assert row.note == "", (row.rule, row.note)
            assert math.isfinite(row.distance) and row.distance < 2 * scen.spread, row
            assert row.time_ms >= 0


def test_robust_rules_are_finite_under_inf_and_average_is_not(inf_rows):
    scen = build_scenarios(n_honest=N_HONEST, n_byzantine=F, dim=DIM, seed=1, attacks=[NO_ATTACK])[0]
    rows = {r.rule: r for r in inf_rows if r.attack == "inf"}
    assert set(rows) == set(registry.AGGREGATORS)
    avg = rows.pop("average")
    assert not math.isfinite(avg.distance) or avg.distance > 1e6
    for rule, row in rows.items():
        assert row.note == "", (rule, row.note)
        assert math.isfinite(row.distance), rule
        assert row.distance < 2 * scen.spread, (rule, row.distance, scen.spread)


def test_scenarios_shapes_and_labelflip_uses_a_model():
    scenarios = build_scenarios(n_honest=4, n_byzantine=2, dim=10, seed=0)
    assert [s.attack for s in scenarios] == [NO_ATTACK, *registry.ATTACKS]
    for s in scenarios:
        assert s.byzantine is not None, (s.attack, s.note)
        assert s.byzantine.shape[0] == 2 and s.byzantine.shape[1] == s.honest.shape[1]
        if s.model_based:
            assert s.attack == "labelflip" and s.honest.shape == (4, 650) and "linear classifier" in s.note
            assert np.isfinite(s.byzantine).all()
        else:
            assert s.honest.shape == (4, 10)
    inf = next(s for s in scenarios if s.attack == "inf")
    assert np.isinf(inf.byzantine).all()


def test_same_seed_same_vectors():
    a = build_scenarios(n_honest=3, n_byzantine=1, dim=5, seed=7, attacks=[NO_ATTACK, "gaussian"])
    b = build_scenarios(n_honest=3, n_byzantine=1, dim=5, seed=7, attacks=[NO_ATTACK, "gaussian"])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.honest, y.honest)
        np.testing.assert_array_equal(x.byzantine, y.byzantine)


def test_a_rule_that_cannot_run_says_why():
    # n = 4, f = 2: every rule that needs n > 2f refuses
    rows, _ = demo_rows(n_honest=2, n_byzantine=2, dim=6, rules=["caf"], attacks=[NO_ATTACK])
    (row,) = rows
    assert math.isnan(row.distance) and "Error" in row.note and "n" in row.note
    text = format_rows(rows)
    assert "caf" in text and row.note in text


def test_unavailable_rule_and_attack_are_reported(monkeypatch):
    monkeypatch.setitem(registry.AGGREGATORS, "ghost", "byzdask.no_such_module:Ghost")
    monkeypatch.setitem(registry.ATTACKS, "phantom", "byzdask.no_such_module:Phantom")
    rows, _ = demo_rows(n_honest=3, n_byzantine=1, dim=4, rules=["average", "ghost"],
                        attacks=[NO_ATTACK, "phantom"])
    by_cell = {(r.rule, r.attack): r for r in rows}
    assert "not available" in by_cell["ghost", NO_ATTACK].note
    assert "not available" in by_cell["average", "phantom"].note
    assert math.isfinite(by_cell["average", NO_ATTACK].distance)


@pytest.mark.parametrize("kwargs", [{"n_honest": 0, "n_byzantine": 1, "dim": 3}, {"n_honest": 2, "n_byzantine": -1, "dim": 3},
                                    {"n_honest": 2, "n_byzantine": 1, "dim": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError, match="got n_honest"):
        demo_rows(**kwargs)


def test_format_rows_marks_missing_values():
    text = format_rows([DemoRow("cwmed", "inf", math.nan, math.nan, "not available"),
                        DemoRow("average", "inf", math.inf, 1.25)], ["a note"])
    lines = text.splitlines()
    assert lines[2].split()[:4] == ["cwmed", "inf", "-", "-"]
    assert lines[3].split()[:4] == ["average", "inf", "inf", "1.25"]
    assert lines[-1] == "note: a note"


def test_cli_demo_prints_the_table():
    result = CliRunner().invoke(main, ["demo", "--n-honest", "5", "-f", "1", "-d", "16", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("byzdask demo: 5 honest + 1 Byzantine vectors of dimension 16, seed 3")
    assert "\naverage " in result.output and "\ncaf " in result.output
