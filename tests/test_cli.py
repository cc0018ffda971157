"""The ``byzdask`` command line, run in-process with click's CliRunner."""

import json

import pytest
from click.testing import CliRunner

from byzdask import __version__
from byzdask.cli import main
from byzdask.doctor import Probe, format_table, probe_module, run_doctor
from byzdask.registry import AGGREGATORS, ATTACKS, PRE_AGGREGATORS

KINDS = {"aggregators": AGGREGATORS, "pre-aggregators": PRE_AGGREGATORS, "attacks": ATTACKS}


def invoke(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_version():
    assert invoke("version").strip() == __version__


@pytest.mark.parametrize("what", sorted(KINDS))
def test_list_json_names_every_registered_class_with_a_reference(what):
    rows = json.loads(invoke("list", what, "--format", "json"))
    assert [r["name"] for r in rows] == list(KINDS[what]) + (["none"] if what == "attacks" else [])
    for row in rows:
        assert row["reference"], f"{row['class']} has no References section"
        assert isinstance(row["defaults"], str)
        if what == "aggregators":
            assert isinstance(row["max_f"], int) and row["max_f"] >= 0
        else:
            assert "max_f" not in row


def test_list_aggregators_max_f_follows_n():
    by_n = {n: {r["name"]: r["max_f"] for r in json.loads(invoke("list", "--n", str(n), "--format", "json"))}
            for n in (7, 13)}
    assert by_n[13]["average"] == 0
    assert by_n[13]["cwtm"] == 6 and by_n[7]["cwtm"] == 3
    assert by_n[13]["krum"] == 5 and by_n[7]["krum"] == 2


@pytest.mark.parametrize("what", sorted(KINDS))
def test_list_table(what):
    lines = invoke("list", what).splitlines()
    assert lines[0].split()[:4] == ["name", "class", *(["max_f"] if what == "aggregators" else []), "defaults",
                                    *([] if what == "aggregators" else ["reference"])]
    assert [line.split()[0] for line in lines[1:]] == list(KINDS[what]) + (["none"] if what == "attacks" else [])


def test_list_shows_each_constructor_default():
    rows = {r["name"]: r for r in json.loads(invoke("list", "aggregators", "--format", "json"))}
    assert rows["cc"]["defaults"].startswith("c_tau=1.0, M=10")
    assert rows["cwtm"]["defaults"].startswith("f")


def test_list_rejects_unknown_kind():
    result = CliRunner().invoke(main, ["list", "optimizers"])
    assert result.exit_code != 0
    assert "optimizers" in result.output


def test_doctor_json():
    probes = json.loads(invoke("doctor", "--format", "json"))
    names = [p["name"] for p in probes]
    assert names == [
        "Python", "byzdask", "numpy", "dask", "distributed", "torch", "CUDA (torch)",
        "cupy", "dask-cuda", "distributed-ucxx", "dask-jobqueue", "numba",
        "xarray", "matplotlib", "netCDF4", "nbclient", "ipywidgets",
    ]
    by_name = {p["name"]: p for p in probes}
    for name in ("Python", "byzdask", "numpy", "dask", "distributed", "torch"):
        assert by_name[name]["installed"] and by_name[name]["usable"], by_name[name]
    assert by_name["byzdask"]["version"] == __version__
    for probe in probes:
        assert set(probe) == {"name", "installed", "version", "usable", "detail"}
        if probe["usable"]:
            assert probe["installed"]
        if not probe["installed"]:
            assert probe["version"] is None and probe["detail"]


def test_doctor_cuda_agrees_with_torch():
    import torch

    cuda = {p.name: p for p in run_doctor()}["CUDA (torch)"]
    assert cuda.usable == torch.cuda.is_available()
    if cuda.usable:
        assert torch.cuda.get_device_name(0) in cuda.detail


def test_doctor_table():
    lines = invoke("doctor").splitlines()
    assert lines[0].split() == ["component", "installed", "version", "usable", "detail"]
    assert lines[1].startswith("Python ")
    assert any(line.startswith("dask-jobqueue ") for line in lines)


def test_probe_of_a_missing_and_of_a_broken_module(tmp_path, monkeypatch):
    missing = probe_module("nothing", "byzdask_no_such_module")
    assert missing == Probe("nothing", False, None, False, "not installed")
    (tmp_path / "byzdask_broken_module.py").write_text("raise ImportError('libfoo.so not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = probe_module("broken", "byzdask_broken_module")
    assert broken.installed and not broken.usable
    assert "libfoo.so not found" in broken.detail


def test_probe_check_decides_usable():
    probe = probe_module("numpy", "numpy", check=lambda mod: (False, "no device"))
    assert probe.installed and not probe.usable and probe.detail == "no device"


def test_format_table_aligns_columns():
    text = format_table([Probe("a", True, "1", True, ""), Probe("longer-name", False, None, False, "why")])
    lines = text.splitlines()
    assert lines[1].index("yes") == lines[2].index("no") == lines[0].index("installed")


def test_help_of_the_group():
    out = invoke("--help")
    assert out.startswith("Usage:")
    for command in main.commands:
        assert command in out


@pytest.mark.parametrize("command", sorted(main.commands))
def test_help_of_every_command_shows_an_example(command):
    out = invoke(command, "--help")
    assert out.startswith("Usage:")
    assert "Example" in out
