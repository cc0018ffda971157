"""``byzdask train``: end to end with --json, on a thread cluster, in-process and peer-to-peer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from byzdask.cli import main
from byzdask.errors import ConfigurationError
from byzdask.train import TrainConfig, build_job, make_pool, parse_topology

pytestmark = pytest.mark.timeout(300)


def invoke(*args):
    return CliRunner().invoke(main, ["train", "--no-progress", *args], catch_exceptions=False)


def test_defaults_learn_in_process(tmp_path):
    out = tmp_path / "run.json"
    result = invoke("--cluster", "none", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "10 honest + 3 Byzantine (little), cwtm (f=3), logreg, 30 rounds" in result.output
    assert "final test accuracy: 0.9" in result.output
    data = json.loads(out.read_text())
    assert data["config"]["f"] == 3 and data["config"]["attack"] == "little"
    assert [h["round"] for h in data["history"]] == [5, 10, 15, 20, 25, 30]
    assert data["final_accuracy"] == data["history"][-1]["accuracy"] >= 0.9


def test_thread_cluster_with_chain_and_kwargs(tmp_path):
    out = tmp_path / "run.json"
    result = invoke("--cluster", "thread", "--rounds", "4", "--eval-every", "2", "--aggregator", "multikrum",
                    "--aggregator-kwargs", '{"q": 5}', "--pre-aggregator", "clipping", "--pre-aggregator", "nnm",
                    "--attack", "gaussian", "--attack-kwargs", '{"sigma": 3.0}', "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "dashboard:" in result.output and "clipping -> nnm -> multikrum" in result.output
    data = json.loads(out.read_text())
    assert data["config"]["pre_aggregators"] == ["clipping", "nnm"]
    assert data["config"]["aggregator_kwargs"] == {"q": 5}
    assert [h["round"] for h in data["history"]] == [2, 4]


def test_p2p_mode(tmp_path):
    out = tmp_path / "p2p.json"
    result = invoke("--mode", "p2p", "--cluster", "thread", "--honest", "4", "--byzantine", "1", "--rounds", "3",
                    "--eval-every", "3", "--topology", "ring:2", "--attack", "signflip", "--json", str(out))
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())["history"][-1]
    assert record["round"] == 3 and {"accuracy", "worst_accuracy", "consensus_distance"} <= set(record)


@pytest.mark.parametrize(("args", "message"), [
    (["--aggregator-kwargs", "[1]"], "JSON object"),
    (["--attack-kwargs", "{bad"], "not valid JSON"),
    (["--aggregator", "nope"], "Invalid value"),
])
def test_option_errors(args, message):
    result = CliRunner().invoke(main, ["train", "--cluster", "none", *args])
    assert result.exit_code == 2 and message in result.output


def test_library_errors_become_click_errors():
    result = CliRunner().invoke(main, ["train", "--cluster", "nowhere"])
    assert result.exit_code == 1 and "unknown cluster 'nowhere'" in result.output
    result = CliRunner().invoke(main, ["train", "--cluster", "none", "--aggregator", "cc",
                                       "--aggregator-kwargs", '{"radius": 1.0}'])
    assert result.exit_code == 1 and "cannot build aggregator 'cc'" in result.output


def test_helpers():
    assert make_pool("none", 2) is None
    assert parse_topology("torus:3x3", 9, []).n == 9
    with pytest.raises(ConfigurationError, match="unknown topology"):
        parse_topology("star", 4, [])
    with pytest.raises(ConfigurationError, match="bad topology"):
        parse_topology("ring:x", 4, [])
    with pytest.raises(ConfigurationError, match="mode"):
        build_job(TrainConfig(mode="gossip"))
    with pytest.raises(ConfigurationError, match="honest"):
        build_job(TrainConfig(honest=0))
    job = build_job(TrainConfig(attack="labelflip", honest=3, byzantine=2))
    assert all(node.data is not None and node.model is not None for node in job["byzantine"])
    assert build_job(TrainConfig(attack="none"))["byzantine"] == []


def test_gamma_partition_prints_its_label_skew():
    result = invoke("--cluster", "none", "--partition", "gamma", "--gamma", "0.0", "--rounds", "2",
                    "--honest", "5", "--byzantine", "1", "--attack", "signflip")
    assert result.exit_code == 0, result.output
    skew = float(result.output.split("partition gamma: label skew ")[1].split()[0])
    assert skew > 0.7
    iid = invoke("--cluster", "none", "--partition", "iid", "--rounds", "1", "--honest", "5", "--byzantine", "1")
    assert float(iid.output.split("partition iid: label skew ")[1].split()[0]) < 0.1


def test_dataset_option_names_missing_files_and_refuses_unfit_models(tmp_path):
    result = CliRunner().invoke(main, ["train", "--cluster", "none", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "train-images-idx3-ubyte" in str(result.exception) + result.output
    result = CliRunner().invoke(main, ["train", "--cluster", "none", "--dataset", "digits", "--model", "resnet"])
    assert result.exit_code != 0 and "does not fit dataset 'digits'" in result.output


def test_a_topology_no_neighbourhood_tolerates_is_refused_before_the_cluster(monkeypatch):
    import byzdask.train

    started = []
    monkeypatch.setattr(byzdask.train, "make_pool", lambda *a, **k: started.append(a))
    result = CliRunner().invoke(main, ["train", "--mode", "p2p", "--topology", "ring:2", "--cluster", "local"])
    assert result.exit_code == 1 and not started
    assert "node 0 aggregates 5 vectors" in result.output and "at most f=2" in result.output
