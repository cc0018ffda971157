"""Sweep configs: parsing, validation errors naming the bad entry, grid points and skip decisions."""

import math

import pytest

from byzdask.errors import ConfigurationError, ToleranceError
from byzdask.experiments.config import Component, SweepConfig, chain_label, load_config


def make(grid=None, training=None, **top):
    raw = {"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1], **(grid or {})},
           "training": {"honest": 4, "rounds": 3, **(training or {})}, **top}
    return SweepConfig.from_dict(raw)


def test_minimal_config_has_the_documented_dims_and_defaults():
    cfg = make()
    assert cfg.dims == ("aggregator", "pre_aggregator", "attack", "f", "alpha", "seed")
    assert cfg.coords == {"aggregator": ["cwtm"], "pre_aggregator": ["none"], "attack": ["signflip"], "f": [1],
                          "alpha": [math.inf], "seed": [0]}
    assert cfg.training["mode"] == "ps" and cfg.training["honest"] == 4
    assert len(cfg.points()) == 1 and cfg.points()[0].skip_reason is None


def test_full_grid_in_c_order():
    cfg = make({"aggregators": ["cwtm", "cwmed"], "pre_aggregators": [[], ["nnm"], ["nnm", "bucketing"]],
                "attacks": ["signflip", {"name": "gaussian", "sigma": 2.0}], "partitions": ["iid", 0.1],
                "seeds": [3, 4]})
    points = cfg.points()
    assert len(points) == 2 * 3 * 2 * 1 * 2 * 2
    assert cfg.coords["pre_aggregator"] == ["none", "nnm", "nnm+bucketing"]
    assert cfg.coords["attack"] == ["signflip", "gaussian(sigma=2.0)"]
    assert cfg.coords["alpha"] == [math.inf, 0.1]
    assert points[0].coords == {"aggregator": "cwtm", "pre_aggregator": "none", "attack": "signflip", "f": 1,
                                "alpha": math.inf, "seed": 3}
    assert points[1].coords["seed"] == 4 and points[2].coords["alpha"] == 0.1
    assert points[-1].coords["aggregator"] == "cwmed"
    assert points[-1].settings["pre_aggregators"] == ["nnm", "bucketing"]
    assert len({p.key for p in points}) == len(points)


@pytest.mark.parametrize("entry, name, kwargs, label", [
    ("cwtm", "cwtm", {}, "cwtm"),
    ({"name": "cc", "c_tau": 1.0}, "cc", {"c_tau": 1.0}, "cc(c_tau=1.0)"),
    ({"cc": {"c_tau": 2.0}}, "cc", {"c_tau": 2.0}, "cc(c_tau=2.0)"),
    ({"name": "cc", "c_tau": 1.0, "label": "clip"}, "cc", {"c_tau": 1.0}, "clip"),
])
def test_component_forms(entry, name, kwargs, label):
    comp = Component.parse("aggregator", entry)
    assert (comp.name, comp.kwargs, comp.label) == (name, kwargs, label)
    assert Component.parse("aggregator", comp.as_config()) == comp


def test_chain_label():
    assert chain_label(()) == "none" and chain_label(("arc", "nnm")) == "arc+nnm"


@pytest.mark.parametrize("entry, alpha", [("iid", math.inf), ("inf", math.inf), (0.1, 0.1), (2, 2.0),
                                          ("dirichlet:0.5", 0.5), ({"dirichlet": 1.0}, 1.0)])
def test_partitions(entry, alpha):
    assert make({"partitions": [entry]}).alpha == [alpha]


@pytest.mark.parametrize("grid, training, match", [
    ({"aggregators": ["nosuchrule"]}, {}, "unknown aggregator 'nosuchrule'"),
    ({"attacks": ["nosuch"]}, {}, "unknown attack 'nosuch'"),
    ({"pre_aggregators": [["nnm", "nope"]]}, {}, "unknown pre-aggregator 'nope' in chain"),
    ({"pre_aggregators": [[1]]}, {}, r"pre_aggregators entry \[1\]"),
    ({"aggregators": [{"name": "cc", "radius": 1.0}]}, {}, "cannot build aggregator 'cc'"),
    ({"aggregators": [{"name": "cc", "c_tau": -1.0}]}, {}, "c_tau"),
    ({"aggregators": [{"cc": 3}]}, {}, "must be a mapping"),
    ({"aggregators": [42]}, {}, "aggregator entry 42"),
    ({"aggregators": "cwtm"}, {}, "grid.aggregators must be a list"),
    ({"aggregators": []}, {}, "grid.aggregators must not be empty"),
    ({"aggregators": ["cwtm", "cwtm"]}, {}, "lists 'cwtm' twice"),
    ({"f": [-1]}, {}, "grid.f entry -1"),
    ({"f": [True]}, {}, "grid.f entry True"),
    ({"seeds": [0.5]}, {}, "grid.seeds entry 0.5"),
    ({"partitions": ["foo"]}, {}, "partition entry 'foo'"),
    ({"partitions": [-0.1]}, {}, "partition entry -0.1"),
    ({"momentum": [0.0, 1.0]}, {}, "grid.momentum entry 1.0"),
    ({"momentum": [0.9]}, {"momentum": 0.5}, "momentum is given both in grid and in training"),
    ({"bogus": [1]}, {}, r"unknown grid key\(s\) \['bogus'\]"),
    ({}, {"mode": "fl"}, "training.mode must be 'ps' or 'p2p', got 'fl'"),
    ({}, {"honest": 0}, "training.honest must be an integer >= 1, got 0"),
    ({}, {"rounds": "10"}, "training.rounds"),
    ({}, {"lr": 0}, "training.lr"),
    ({}, {"momentum": [0.0, 0.9]}, "put it under grid"),
    ({}, {"model": "vit"}, "unknown training.model 'vit'"),
    ({}, {"colour": "red"}, r"unknown training key\(s\) \['colour'\]"),
    ({}, {"mode": "p2p", "topology": "moebius"}, "unknown topology 'moebius'"),
])
def test_validation_errors_name_the_bad_entry(grid, training, match):
    with pytest.raises(ConfigurationError, match=match):
        make(grid, training)


def test_top_level_errors():
    with pytest.raises(ConfigurationError, match="needs a 'grid' mapping"):
        SweepConfig.from_dict({"training": {}})
    with pytest.raises(ConfigurationError, match=r"grid.f is required"):
        SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"]}})
    with pytest.raises(ConfigurationError, match=r"unknown top-level key\(s\) \['grids'\]"):
        SweepConfig.from_dict({"grids": {}})
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        SweepConfig.from_dict([1, 2])
    with pytest.raises(ConfigurationError, match="on_intolerable must be 'skip' or 'error'"):
        make(on_intolerable="maybe")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        SweepConfig.from_yaml("grid: [unclosed")
    with pytest.raises(ConfigurationError, match="cannot read the sweep config"):
        load_config("/nonexistent/sweep.yaml")


def test_intolerable_points_are_skipped_with_the_reason():
    cfg = make({"aggregators": ["cwtm", "krum"], "f": [1, 2]})  # honest 4: n = 5 and 6
    reasons = {(p.coords["aggregator"], p.coords["f"]): p.skip_reason for p in cfg.points()}
    assert reasons[("cwtm", 1)] is None and reasons[("cwtm", 2)] is None and reasons[("krum", 1)] is None
    assert reasons[("krum", 2)] == "krum tolerates at most f=1 with n=6; this point has f=2"


def test_intolerable_points_refused_on_request():
    with pytest.raises(ToleranceError, match="1 of 4 grid points cannot run"):
        make({"aggregators": ["cwtm", "krum"], "f": [1, 2]}, on_intolerable="error")


def test_rules_without_f_use_their_max_f():
    cfg = make({"aggregators": ["cwmed", "gm"], "f": [3]}, {"honest": 3})  # n = 6: n > 2f fails
    assert all("tolerates at most f=2 with n=6" in p.skip_reason for p in cfg.points())


def test_bucketing_shrinks_n_before_the_rule():
    cfg = make({"pre_aggregators": [[], ["bucketing"]], "f": [3, 4]}, {"honest": 10})
    reasons = {(p.coords["pre_aggregator"], p.coords["f"]): p.skip_reason for p in cfg.points()}
    assert reasons[("none", 4)] is None and reasons[("bucketing", 3)] is None
    assert reasons[("bucketing", 4)] == "cwtm tolerates at most f=3 with 7 vectors after bucketing; this point has f=4"


def test_p2p_counts_the_in_neighbours():
    cfg = make({"f": [1, 2]}, {"mode": "p2p", "topology": "ring", "honest": 6})
    reasons = [p.skip_reason for p in cfg.points()]
    assert reasons[0] is None
    assert reasons[1] == "cwtm tolerates at most f=1 with n=3 (own vector + fewest in-neighbours); this point has f=2"


def test_attack_none_means_no_byzantine_nodes():
    cfg = make({"attacks": ["none"], "f": [2]}, {"honest": 3})  # n = 3 honest, cwtm f=2 cannot run
    assert cfg.points()[0].skip_reason == "cwtm tolerates at most f=1 with n=3; this point has f=2"


def test_momentum_dimension():
    cfg = make({"momentum": [0.0, 0.9], "batch_size": [4]})
    assert cfg.dims == ("aggregator", "pre_aggregator", "attack", "f", "alpha", "momentum", "batch_size", "seed")
    assert "momentum" not in cfg.training
    points = cfg.points()
    assert [p.coords["momentum"] for p in points] == [0.0, 0.9]
    assert [p.settings["momentum"] for p in points] == [0.0, 0.9]
    assert points[0].train_config().momentum == 0.0 and points[1].train_config().batch_size == 4


def test_keys_depend_on_settings_not_labels():
    a = make({"aggregators": [{"name": "cc", "c_tau": 1.0}]}).points()[0]
    b = make({"aggregators": [{"name": "cc", "c_tau": 1.0, "label": "clipping"}]}).points()[0]
    c = make({"aggregators": [{"name": "cc", "c_tau": 2.0}]}).points()[0]
    d = make({"aggregators": [{"name": "cc", "c_tau": 1.0}]}, {"rounds": 4}).points()[0]
    assert a.key == b.key and len({a.key, c.key, d.key}) == 3


def test_train_config_of_a_point():
    p = make({"partitions": [0.3]}, {"lr": 0.2}).points()[0]
    tc = p.train_config()
    assert (tc.partition, tc.alpha, tc.byzantine, tc.f, tc.lr, tc.cluster) == ("dirichlet", 0.3, 1, 1, 0.2, "none")
    assert make().points()[0].train_config().partition == "iid"


def test_eval_rounds():
    assert make(training={"rounds": 10, "eval_every": 4}).eval_rounds == [4, 8, 10]
    assert make(training={"rounds": 3, "eval_every": 10}).eval_rounds == [3]


def test_yaml_round_trip_and_file(tmp_path):
    cfg = make({"aggregators": ["cwtm", {"name": "cc", "c_tau": 1.0, "label": "clip"}],
                "pre_aggregators": [[], ["nnm"]], "partitions": ["iid", 0.1], "momentum": [0.0, 0.9]},
               name="demo")
    assert SweepConfig.from_yaml(cfg.to_yaml()) == cfg
    path = tmp_path / "sweep.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg and load_config(cfg) is cfg
    assert load_config(cfg.as_dict()) == cfg
