"""Job-queue clusters: options from dask.config and arguments, job scripts, the local job-queue class.

No batch system is ever called: scripts are rendered, and real worker processes are started
through dask-jobqueue's own test class (``dask_jobqueue.local.LocalCluster``).
"""

import socket

import dask
import pytest

from byzdask.errors import ConfigurationError
from byzdask.experiments import hpc

pytestmark = pytest.mark.requires_jobqueue


def sbatch_lines(script):
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_slurm_script_has_queue_account_walltime_memory_and_worker_command():
    script = hpc.job_script("slurm", queue="gpu", account="proj42", walltime="02:30:00", cores=8, memory="32GiB",
                            processes=2, job_extra=["--gres=gpu:1"], prologue=["module load cuda/12"],
                            scheduler_address="tcp://10.0.0.1:8786")
    lines = sbatch_lines(script)
    for expected in ("#SBATCH -p gpu", "#SBATCH -A proj42", "#SBATCH -t 02:30:00", "#SBATCH --mem=32G",
                     "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1"):
        assert expected in lines
    body = script.split("\n")
    worker = next(line for line in body if "distributed.cli.dask_worker" in line)
    assert "tcp://10.0.0.1:8786" in worker and "--nworkers 2" in worker and "--nthreads 4" in worker
    assert body.index("module load cuda/12") < body.index(worker)


@pytest.mark.parametrize(("system", "queue_line", "account_line", "walltime_line"), [
    ("pbs", "#PBS -q short", "#PBS -A proj42", "#PBS -l walltime=01:00:00"),
    ("sge", "#$ -q short", "#$ -P proj42", "#$ -l h_rt=01:00:00"),
    ("lsf", "#BSUB -q short", '#BSUB -P "proj42"', "#BSUB -W 01:00"),
])
def test_other_systems_map_account_to_their_keyword(system, queue_line, account_line, walltime_line):
    script = hpc.job_script(system, queue="short", account="proj42", walltime="01:00:00", cores=2, memory="4GiB")
    lines = script.splitlines()
    assert queue_line in lines and account_line in lines
    assert any(line.startswith(walltime_line) for line in lines)
    assert any("distributed.cli.dask_worker tcp://<scheduler-address>:8786" in line for line in lines)


def test_options_come_from_byzdask_config_and_arguments_win():
    settings = dask.config.collect_env({
        "DASK_BYZDASK__JOBQUEUE__QUEUE": "short",
        "DASK_BYZDASK__JOBQUEUE__ACCOUNT": "from-env",
        "DASK_BYZDASK__JOBQUEUE__WALLTIME": "04:00:00",
        "DASK_BYZDASK__JOBQUEUE__MEMORY": "16GiB",
        "DASK_BYZDASK__JOBQUEUE__CORES": "4",
        "DASK_BYZDASK__JOBQUEUE__JOB_EXTRA": "['--exclusive']",
    })
    with dask.config.set(settings):
        kwargs = hpc.jobqueue_options("slurm", account="from-cli")
        script = hpc.job_script("slurm", walltime="00:10:00")
    assert kwargs["queue"] == "short" and kwargs["account"] == "from-cli" and kwargs["cores"] == 4
    assert kwargs["job_extra_directives"] == ["--exclusive"]
    lines = sbatch_lines(script)
    assert {"#SBATCH -p short", "#SBATCH -A from-env", "#SBATCH -t 00:10:00", "#SBATCH --mem=16G",
            "#SBATCH --exclusive"} <= set(lines)


def test_dask_jobqueue_settings_apply_when_byzdask_leaves_them_null():
    with dask.config.set({"jobqueue.slurm.cores": 6, "jobqueue.slurm.memory": "12GiB",
                          "jobqueue.slurm.walltime": "03:00:00"}):
        kwargs = hpc.jobqueue_options("slurm")
        script = hpc.job_script("slurm")
    assert "cores" not in kwargs and "memory" not in kwargs  # left to dask-jobqueue
    assert {"#SBATCH --cpus-per-task=6", "#SBATCH -t 03:00:00", "#SBATCH --mem=12G"} <= set(sbatch_lines(script))
    assert hpc.jobqueue_options("slurm")["cores"] == 1  # byzdask's fallback


def test_errors():
    with pytest.raises(ConfigurationError, match="unknown job-queue system 'torque'"):
        hpc.job_script("torque")
    with pytest.raises(ConfigurationError, match="htcondor jobs have no account"):
        hpc.jobqueue_options("htcondor", account="x")
    with pytest.raises(ConfigurationError, match="htcondor jobs have no queue"):
        hpc.jobqueue_options("htcondor", queue="x")
    with pytest.raises(ConfigurationError, match="cores must be a positive integer, got 0"):
        hpc.jobqueue_options("slurm", cores=0)
    with pytest.raises(ConfigurationError, match=r"processes \(4\) cannot exceed cores per job \(2\)"):
        hpc.jobqueue_options("slurm", cores=2, processes=4)
    with pytest.raises(ConfigurationError, match="jobs must be a non-negative integer, got -1"):
        hpc.jobqueue_cluster("slurm", jobs=-1)
    with pytest.raises(ConfigurationError, match="at least one job"):
        hpc.jobqueue_pool("slurm", jobs=0)


def test_scheduler_address_is_never_every_interface(monkeypatch):
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "10.1.2.3")
    assert hpc._scheduler_options({}, None) == {"dashboard_address": "127.0.0.1:0", "host": "10.1.2.3"}
    assert hpc._scheduler_options({}, "ib0") == {"dashboard_address": "127.0.0.1:0"}  # host from the interface
    assert hpc._scheduler_options({"scheduler_host": "192.168.1.5"}, None)["host"] == "192.168.1.5"
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")
    with pytest.raises(ConfigurationError, match="resolves to the loopback address 127.0.1.1"):
        hpc._scheduler_options({}, None)


def test_local_job_queue_cluster_runs_real_workers():
    from dask_jobqueue.local import LocalCluster
    from distributed import Client

    with hpc.jobqueue_cluster(LocalCluster, jobs=1, cores=2, processes=2, memory="1GiB",
                              scheduler_host="127.0.0.1") as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        info = client.scheduler_info(n_workers=-1)["workers"]
        assert len(info) == 2 and all(w["host"] == "127.0.0.1" for w in info.values())
        assert client.submit(pow, 2, 5, pure=False).result(timeout=60) == 32
        assert len(cluster.worker_spec) == 1  # one job holding two worker processes


def test_pool_on_local_job_queue_cluster_closes_it():
    from dask_jobqueue.local import LocalCluster

    pool = hpc.jobqueue_pool(LocalCluster, jobs=1, cores=1, memory="1GiB", scheduler_host="127.0.0.1")
    cluster = pool._jobqueue_cluster
    with pool.sync() as client:
        assert pool.size == 1
        assert pool.workers_with("cpu")
        assert client.submit(sum, [1, 2, 3], resources={"cpu": 1}, pure=False).result(timeout=60) == 6
    assert cluster.status.name == "closed"


def test_capabilities_become_worker_resources():
    script = hpc.job_script("slurm", cores=4, processes=2, capabilities=["cpu"])
    worker = next(line for line in script.splitlines() if "dask_worker" in line)
    assert worker.endswith("--resources cpu=2")
    assert "--resources" not in hpc.job_script("slurm", cores=4)


def test_jobscript_cli():
    from click.testing import CliRunner

    from byzdask.cli import main

    args = ["jobscript", "--cluster", "slurm", "-q", "short", "-A", "proj1", "-t", "01:00:00", "--cores", "8",
            "--memory", "32GiB", "--processes", "2", "--job-extra=--gres=gpu:1", "--prologue", "module load cuda"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert {"#SBATCH -p short", "#SBATCH -A proj1", "#SBATCH -t 01:00:00", "#SBATCH --mem=32G",
            "#SBATCH --gres=gpu:1", "module load cuda"} <= set(lines)
    assert lines[-1].endswith("--nworkers 2 --nanny --death-timeout 60 --resources cpu=4")
    env = {"DASK_BYZDASK__JOBQUEUE__QUEUE": "from-env"}
    with dask.config.set(dask.config.collect_env(env)):
        from_config = CliRunner().invoke(main, ["jobscript", "--cluster", "pbs"])
    assert "#PBS -q from-env" in from_config.output.splitlines()
    bad = CliRunner().invoke(main, ["jobscript", "--cluster", "htcondor", "--queue", "x"])
    assert bad.exit_code != 0 and "htcondor jobs have no queue" in bad.output


def test_train_make_pool_builds_job_queue_pools_through_hpc(monkeypatch):
    from byzdask import train

    calls = []
    monkeypatch.setattr(hpc, "jobqueue_pool", lambda system, **options: calls.append((system, options)) or "pool")
    assert train.make_pool("slurm", 2, {"jobs": 3, "queue": "short"}) == "pool"
    assert train.make_pool("pbs", 2) == "pool"
    assert calls == [("slurm", {"jobs": 3, "queue": "short"}), ("pbs", {})]
