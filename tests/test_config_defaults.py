"""The defaults of ``byzdask train`` and ``byzdask sweep`` come from dask.config (byzdask.train.*,
byzdask.sweep.*), read when the command runs; the job-queue options of both reach the cluster
that ``--cluster slurm|pbs|...`` builds."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest
from click.testing import CliRunner

from byzdask import config as byz_config
from byzdask.cli import main
from byzdask.errors import ConfigurationError
from byzdask.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SWEEP_CONFIG = str(ROOT / "examples" / "sweeps" / "momentum_signflip.yaml")

# TrainConfig field -> byzdask.train key; every field but the JSON kwargs has one.
TRAIN_KEYS = {f.name: f.name.replace("_", "-") for f in dataclasses.fields(TrainConfig)
              if f.name not in ("aggregator_kwargs", "attack_kwargs")}

# Values different from every default, valid for the option.
OTHER_VALUES = {"mode": "p2p", "aggregator": "gm", "pre_aggregators": ["nnm", "clipping"], "attack": "signflip",
                "honest": 7, "byzantine": 2, "f": 1, "rounds": 4, "lr": 0.25, "momentum": 0.0, "batch_size": 16,
                "weight_decay": 0.001, "partition": "dirichlet", "alpha": 0.1, "gamma": 0.25, "topology": "ring:2",
                "model": "mlp", "dataset": "mnist", "data_dir": "/tmp/byzdask-data", "seed": 9, "cluster": "thread", "workers": 3, "eval_every": 2,
                "protocol": "fedavg", "local_steps": 3, "participation": 0.5, "clients_per_round": 4, "server_lr": 0.5, "tls": True}


class _Stop(Exception):
    pass


@pytest.fixture
def captured_train(monkeypatch):
    """Replace run_training: record the TrainConfig, the progress flag and byzdask.jobqueue at call time."""
    import byzdask.train

    calls = []

    def fake(config, *, progress=True, echo=None):
        calls.append({"config": config, "progress": progress, "jobqueue": dict(byz_config.get("jobqueue"))})
        return {"config": config.as_dict(), "history": [], "final_accuracy": None, "seconds": 0.0,
                "dashboard": None}

    monkeypatch.setattr(byzdask.train, "run_training", fake)
    return calls


@pytest.fixture
def captured_sweep(monkeypatch):
    """Replace run_sweep: record its keyword arguments and byzdask.jobqueue at call time, then stop."""
    import byzdask.experiments.sweep

    calls = []

    def fake(config, **kwargs):
        calls.append({**kwargs, "jobqueue": dict(byz_config.get("jobqueue"))})
        raise ConfigurationError("stopped by the test")

    monkeypatch.setattr(byzdask.experiments.sweep, "run_sweep", fake)
    return calls


def invoke(*args):
    return CliRunner().invoke(main, list(args), prog_name="byzdask")


def test_yaml_defaults_are_the_train_config_defaults():
    for field, key in TRAIN_KEYS.items():
        expected = getattr(TrainConfig(), field)
        value = byz_config.get(f"train.{key}")
        assert (tuple(value) if field == "pre_aggregators" else value) == expected, field
        assert type(value) is type(expected) or expected is None or field == "pre_aggregators", field
    assert byz_config.get("train.progress") is True
    assert {"cluster": byz_config.get("sweep.cluster"), "workers": byz_config.get("sweep.workers"),
            "retry-failed": byz_config.get("sweep.retry-failed"), "progress": byz_config.get("sweep.progress")} == \
        {"cluster": "local", "workers": None, "retry-failed": True, "progress": True}


def test_train_without_options_uses_the_yaml_defaults(captured_train):
    result = invoke("train")
    assert result.exit_code == 0, result.output
    (call,) = captured_train
    assert call["config"] == TrainConfig() and call["progress"] is True
    assert "10 honest + 3 Byzantine (little), cwtm (f=3), logreg, 30 rounds" in result.output


def test_every_train_default_is_read_from_dask_config_at_call_time(captured_train):
    settings = {f"byzdask.train.{key}": OTHER_VALUES[field] for field, key in TRAIN_KEYS.items()}
    with dask.config.set({**settings, "byzdask.train.progress": False}):
        result = invoke("train")
    assert result.exit_code == 0, result.output
    (call,) = captured_train
    got = dataclasses.asdict(call["config"])
    got["pre_aggregators"] = list(got["pre_aggregators"])
    assert {k: got[k] for k in OTHER_VALUES} == OTHER_VALUES
    assert call["progress"] is False
    # an option given on the command line wins over the configuration
    with dask.config.set({"byzdask.train.rounds": 4}):
        assert invoke("train", "--rounds", "6").exit_code == 0
    assert captured_train[-1]["config"].rounds == 6


def test_environment_variables_set_train_defaults(captured_train):
    env = {"DASK_BYZDASK__TRAIN__ROUNDS": "5", "DASK_BYZDASK__TRAIN__AGGREGATOR": "gm",
           "DASK_BYZDASK__TRAIN__LR": "0.1"}
    parsed = dask.config.collect_env(env)["byzdask"]["train"]  # what dask reads from the environment
    with dask.config.set({f"byzdask.train.{key}": value for key, value in parsed.items()}):
        result = invoke("train")
        help_text = invoke("train", "--help").output
    assert result.exit_code == 0, result.output
    config = captured_train[0]["config"]
    assert (config.rounds, config.aggregator, config.lr) == (5, "gm", 0.1)
    assert "(byzdask.train.rounds)  [default: 5]" in help_text
    assert "(byzdask.train.rounds)  [default: 30]" in invoke("train", "--help").output


def test_a_real_environment_variable_reaches_a_real_run():
    env = {**os.environ, "DASK_BYZDASK__TRAIN__ROUNDS": "2", "DASK_BYZDASK__TRAIN__EVAL_EVERY": "2",
           "DASK_BYZDASK__TRAIN__CLUSTER": "none"}
    proc = subprocess.run([sys.executable, "-m", "byzdask", "train", "--honest", "4", "--byzantine", "1",
                           "--no-progress"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 honest + 1 Byzantine (little), cwtm (f=1), logreg, 2 rounds" in proc.stdout
    assert "after 2 rounds" in proc.stdout


def test_help_shows_the_values_in_effect_and_their_keys():
    def flat(text):  # one line, without click's wrapping
        return " ".join(text.split()).replace("- ", "-")

    with dask.config.set({"byzdask.train.momentum": 0.5, "byzdask.sweep.workers": 6}):
        train_help, sweep_help = flat(invoke("train", "--help").output), flat(invoke("sweep", "--help").output)
    assert "(byzdask.train.momentum) [default: 0.5]" in train_help
    assert "(byzdask.sweep.workers) [default: 6]" in sweep_help
    assert "(dynamic)" not in train_help + sweep_help
    for key in TRAIN_KEYS.values():
        assert f"(byzdask.train.{key})" in train_help, key


def test_sweep_defaults_are_read_from_dask_config(captured_sweep):
    result = invoke("sweep", SWEEP_CONFIG)
    assert result.exit_code == 1 and "stopped by the test" in result.output
    call = captured_sweep[-1]
    assert (call["cluster"], call["workers"], call["retry_failed"], call["progress"]) == ("local", None, True, True)
    with dask.config.set({"byzdask.sweep.cluster": "thread", "byzdask.sweep.workers": 3,
                          "byzdask.sweep.retry-failed": False, "byzdask.sweep.progress": False}):
        invoke("sweep", SWEEP_CONFIG)
    call = captured_sweep[-1]
    assert (call["cluster"], call["workers"], call["retry_failed"], call["progress"]) == ("thread", 3, False, False)


JOBQUEUE_ARGS = ["--cluster", "slurm", "--jobs", "2", "--queue", "short", "--walltime", "00:30:00", "-A", "proj1",
                 "--cores", "4", "--memory", "8GiB", "--job-extra=--gres=gpu:1", "--prologue", "module load cuda"]
JOBQUEUE_EXPECTED = {"jobs": 2, "queue": "short", "walltime": "00:30:00", "account": "proj1", "cores": 4,
                     "memory": "8GiB", "job-extra": ["--gres=gpu:1"], "prologue": ["module load cuda"]}


def test_job_queue_options_of_train_and_sweep_reach_the_cluster_settings(captured_train, captured_sweep):
    assert invoke("train", *JOBQUEUE_ARGS).exit_code == 0
    invoke("sweep", SWEEP_CONFIG, *JOBQUEUE_ARGS)
    for call in (captured_train[-1], captured_sweep[-1]):
        assert {k: call["jobqueue"][k] for k in JOBQUEUE_EXPECTED} == JOBQUEUE_EXPECTED
    assert captured_train[-1]["config"].cluster == "slurm"
    # only for the duration of the command
    assert byz_config.get("jobqueue.queue") is None and byz_config.get("jobqueue.jobs") == 1


@pytest.mark.requires_jobqueue
def test_train_job_queue_options_reach_the_job_script(monkeypatch):
    from byzdask.experiments import hpc

    scripts = []

    def fake_pool(system, **options):
        scripts.append((system, hpc.job_script(system, **options), byz_config.get("jobqueue.jobs")))
        raise ConfigurationError("stopped by the test")

    monkeypatch.setattr(hpc, "jobqueue_pool", fake_pool)
    result = invoke("train", *JOBQUEUE_ARGS)
    assert result.exit_code == 1 and "stopped by the test" in result.output
    ((system, script, jobs),) = scripts
    assert system == "slurm" and jobs == 2
    assert {"#SBATCH -p short", "#SBATCH -t 00:30:00", "#SBATCH -A proj1", "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=8G", "#SBATCH --gres=gpu:1", "module load cuda"} <= set(script.splitlines())


def test_job_queue_options_need_a_job_queue_cluster():
    for command in (["train"], ["sweep", SWEEP_CONFIG]):
        result = invoke(*command, "--cluster", "thread", "--queue", "short", "--walltime", "1:00:00")
        assert result.exit_code == 2
        assert "--queue, --walltime apply to a job-queue cluster" in result.output
