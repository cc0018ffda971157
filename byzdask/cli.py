"""The ``byzdask`` command line (also ``python -m byzdask``)."""

from __future__ import annotations

import click

from byzdask._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """byzdask: Byzantine-robust distributed learning on Dask."""


@main.command()
def version() -> None:
    """Print the byzdask version.

    Example: byzdask version
    """
    click.echo(__version__)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def doctor(fmt: str) -> None:
    """Report which parts of the stack are installed and usable.

    Python, byzdask, numpy, dask, distributed, torch, CUDA (as torch sees it, with the device
    names), cupy, dask-cuda, distributed-ucxx, dask-jobqueue and numba: installed or not, the
    version, and whether it imports (and, for the GPU stack, finds a device).

    Examples: byzdask doctor; byzdask doctor --format json
    """
    import json

    from byzdask.doctor import format_table, run_doctor

    probes = run_doctor()
    if fmt == "json":
        click.echo(json.dumps([p.as_dict() for p in probes], indent=2))
    else:
        click.echo(format_table(probes))


@main.command()
@click.option("--n-honest", default=10, show_default=True, help="honest vectors")
@click.option("--n-byzantine", "-f", default=3, show_default=True, help="Byzantine vectors")
@click.option("--dim", "-d", default=100_000, show_default=True, help="vector dimension")
@click.option("--seed", default=0, show_default=True)
def demo(n_honest: int, n_byzantine: int, dim: int, seed: int) -> None:
    """Aggregate honest and attacked gradients with every rule and print a table.

    Example: byzdask demo --n-honest 10 -f 3 -d 100000
    """
    from byzdask.demo import run_demo

    click.echo(run_demo(n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed))


_LIST_KINDS = {"aggregators": "aggregator", "pre-aggregators": "pre-aggregator", "attacks": "attack"}


@main.command("list")
@click.argument("what", type=click.Choice(sorted(_LIST_KINDS)), default="aggregators")
@click.option("--n", "n", default=13, show_default=True, type=click.IntRange(min=1),
              help="n used to state each rule's tolerated f")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_(what: str, n: int, fmt: str) -> None:
    """List the aggregators, pre-aggregators or attacks with their short names.

    Example: byzdask list aggregators --n 13 --format json
    """
    import json

    from byzdask.catalog import describe

    rows = describe(_LIST_KINDS[what], n=n)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    keys = [k for k in ("name", "class", "max_f", "defaults", "reference") if any(k in r for r in rows)]
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    click.echo("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        click.echo("  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict:
    import json

    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}): {value!r}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"must be a JSON object such as '{{\"f\": 2}}', got {value!r}")
    return parsed


def _names(kind: str) -> list[str]:
    from byzdask.registry import AGGREGATORS, ATTACKS, PRE_AGGREGATORS

    return list({"aggregator": AGGREGATORS, "pre-aggregator": PRE_AGGREGATORS, "attack": ATTACKS}[kind])


def _with_jobqueue_options(command):
    """The job-queue options (``--jobs``, ``--queue``, ``--walltime``...) of ``--cluster slurm|pbs|...``."""
    from byzdask.experiments.hpc import click_options

    return click_options(jobs=True)(command)


def _quiet_workers():
    """Context: worker processes started inside it log distributed's warnings only (they read
    ``DASK_LOGGING__DISTRIBUTED``); the variable and the setting are restored after, so a caller's
    process (a notebook, a test session, later clusters) is left as it was."""
    import contextlib
    import logging
    import os

    import dask

    @contextlib.contextmanager
    def quiet():
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")] + ["distributed"]:
            logging.getLogger(name).setLevel(logging.WARNING)
        had = "DASK_LOGGING__DISTRIBUTED" in os.environ
        level = os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        try:
            with dask.config.set({"logging.distributed": level}):
                yield
        finally:
            if not had:
                os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)

    return quiet()


def _jobqueue_settings(cluster: str, options: dict) -> dict:
    """Remove the job-queue options from ``options``; return those given as ``byzdask.jobqueue.*`` settings.

    The cluster that ``make_pool`` builds for a batch system reads them from dask.config.
    """
    from byzdask.experiments.hpc import SYSTEMS, pop_click_options

    given = pop_click_options(options)
    if given and cluster not in SYSTEMS:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags} apply to a job-queue cluster (--cluster {'|'.join(SYSTEMS)}), "
                               f"not to --cluster {cluster}")
    return {f"byzdask.jobqueue.{name.replace('_', '-')}": value for name, value in given.items()}


class _ConfigOption(click.Option):
    """An option whose default is the option ``byzdask.<key>`` of dask.config, read when the command
    runs; ``--help`` shows the value in effect (set in byzdask.yaml, ~/.config/dask/*.yaml, a
    ``DASK_BYZDASK__...`` variable or ``dask.config.set``)."""

    def get_default(self, ctx: click.Context, call: bool = True):
        return super().get_default(ctx, call=True)


def _config_option(*decls: str, key: str, help: str = "", none_as: str | None = None, **kwargs):
    """``click.option`` with ``default=`` the dask.config option ``byzdask.<key>`` (read at call time).

    ``none_as``: the value that a null stands for (dask reads the variable value ``none`` as null).
    """
    def default():
        from byzdask import config

        value = config.get(key)
        return none_as if value is None and none_as is not None else value

    text = f"{help}  (byzdask.{key})" if help else f"(byzdask.{key})"
    return click.option(*decls, cls=_ConfigOption, default=default, show_default=True, help=text, **kwargs)


def _train_option(*decls: str, **kwargs):
    name = next(d for d in decls if d.startswith("--")).lstrip("-").split("/")[0]
    return _config_option(*decls, key=f"train.{name}", **kwargs)


@main.command()
@_train_option("--mode", type=click.Choice(["ps", "p2p"]), help="parameter server or peer-to-peer")
@_train_option("--aggregator", type=click.Choice(_names("aggregator")))
@_config_option("--pre-aggregator", "pre_aggregators", key="train.pre-aggregators",
                type=click.Choice(_names("pre-aggregator")), multiple=True,
                help="applied in the order given (repeat the option)")
@_train_option("--attack", type=click.Choice(["none", *_names("attack")]))
@_train_option("--honest", type=int, help="honest nodes")
@_train_option("--byzantine", type=int, help="Byzantine nodes")
@_config_option("-f", "f", key="train.f", type=int, help="f given to the rules; null: --byzantine")
@_train_option("--rounds", type=int)
@_train_option("--lr", type=float)
@_train_option("--momentum", type=float, help="worker momentum of the honest nodes")
@_train_option("--batch-size", type=int)
@_train_option("--weight-decay", type=float)
@_train_option("--partition", type=click.Choice(["iid", "dirichlet", "gamma", "extreme"]),
               help="iid, dirichlet (--alpha), gamma-similarity (--gamma), extreme (sorted by label)")
@_train_option("--alpha", type=float, help="Dirichlet concentration (non-IID)")
@_train_option("--gamma", type=float, help="gamma partition: share of the data dealt IID (1 IID, 0 extreme)")
@_train_option("--topology", help="p2p: complete, ring[:k], kregular:k, erdos-renyi:p, torus:RxC")
@_train_option("--model", type=click.Choice(["logreg", "mlp", "cnn", "resnet"]),
               help="logreg, mlp, cnn (every dataset); resnet (CIFAR)")
@_train_option("--dataset", type=click.Choice(["digits", "mnist", "fashion-mnist", "emnist", "cifar10", "cifar100"]),
               help="digits ships with scikit-learn; the others are read from torchvision's files in --data-dir")
@_train_option("--data-dir", type=click.Path(file_okay=False), help="folder holding torchvision's files (no download)")
@_train_option("--seed", type=int)
@_train_option("--cluster", none_as="none", help="local (worker processes), thread, none, tcp://host:port, or slurm/pbs/sge/lsf/...")
@_train_option("--workers", type=int, help="workers of a cluster byzdask starts (not of a job queue)")
@_train_option("--eval-every", type=int)
@_train_option("--tls/--no-tls", help="TLS with temporary self-signed certificates on the cluster byzdask starts")
@_train_option("--protocol", type=click.Choice(["dsgd", "fedavg"]),
               help="mode ps: dsgd (a gradient per node and round) or fedavg (local steps on sampled clients)")
@_train_option("--local-steps", type=int, help="fedavg: SGD steps per sampled client and round")
@_train_option("--participation", type=float, help="fedavg: share of the honest clients sampled per round")
@_train_option("--clients-per-round", type=int, help="fedavg: clients sampled per round (instead of --participation)")
@_train_option("--server-lr", type=float, help="fedavg: x <- x + server-lr * aggregate")
@click.option("--aggregator-kwargs", callback=_json_object, help='JSON, e.g. \'{"f": 2}\'')
@click.option("--attack-kwargs", callback=_json_object, help='JSON, e.g. \'{"sigma": 200}\'')
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              help="write config, history and final accuracy here")
@_train_option("--progress/--no-progress", help="progress bar of the rounds")
@_with_jobqueue_options
def train(json_path: str | None, progress: bool, pre_aggregators: tuple[str, ...], **options) -> None:
    """Train a model on the digits data with honest and Byzantine nodes; print the accuracy.

    The defaults (byzdask.train in dask.config, e.g. DASK_BYZDASK__TRAIN__ROUNDS=100): 10
    honest + 3 Byzantine nodes (attack "little"), coordinate-wise trimmed mean, logistic
    regression, 30 parameter-server rounds on a local cluster of 2 worker processes that the
    command starts and closes. With --cluster slurm|pbs|sge|lsf|... the job-queue options
    (--jobs, --queue, --walltime...; defaults in byzdask.jobqueue) describe the batch jobs.

    Examples: byzdask train; byzdask train --aggregator gm --attack inf --cluster thread;
    byzdask train --mode p2p --topology ring:3 --json run.json;
    byzdask train --cluster slurm --jobs 2 --queue short --walltime 00:30:00
    """
    import json
    import os

    import dask

    from byzdask.errors import ByzdaskError
    from byzdask.train import TrainConfig, run_training

    jobqueue = _jobqueue_settings(options["cluster"], options)
    config = TrainConfig(pre_aggregators=tuple(pre_aggregators), **options)
    if json_path:  # found out now, not after the training
        target = os.path.abspath(json_path)
        if not os.access(target if os.path.exists(target) else os.path.dirname(target), os.W_OK):
            raise click.BadParameter(f"cannot write {json_path!r} (no such directory, or no permission)",
                                     param_hint="--json")
    chain = " -> ".join([*config.pre_aggregators, config.aggregator])
    click.echo(f"byzdask train: {config.mode}, {config.honest} honest + {config.byzantine} Byzantine "
               f"({config.attack}), {chain} (f={config.resolved_f()}), "
               f"{'' if config.dataset == 'digits' else config.dataset + ' '}{config.model}, {config.rounds} rounds")
    try:
        with dask.config.set(jobqueue), _quiet_workers():  # Dask's INFO lines would bury the progress bar
            result = run_training(config, progress=progress, echo=click.echo)
    except ByzdaskError as exc:
        raise click.ClickException(str(exc)) from exc
    final = result["final_accuracy"]
    text = "n/a" if final is None else f"{final:.4f}"
    click.echo(f"final test accuracy: {text} after {config.rounds} rounds ({result['seconds']:.1f} s)")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as file:
            json.dump(result, file, indent=2)
        click.echo(f"wrote {json_path}")


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@_config_option("--cluster", key="sweep.cluster",
                help="local (worker processes), thread, tcp://host:port, or slurm/pbs/sge/lsf/...")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="output directory (runs/, results.nc)  [default: ./<config name>-sweep]")
@_config_option("--workers", key="sweep.workers", type=int,
                help="workers of a cluster byzdask starts (not of a job queue); null: the CPU count")
@_config_option("--retry-failed/--no-retry-failed", key="sweep.retry-failed",
                help="on resume, run again the runs that failed")
@_config_option("--progress/--no-progress", key="sweep.progress", help="progress bar of the runs")
@_with_jobqueue_options
def sweep(config_path: str, cluster: str, out: str | None, workers: int | None, retry_failed: bool,
          progress: bool, **jobqueue_options) -> None:
    """Run a sweep (rules x pre-aggregators x attacks x f x partitions x seeds) on a Dask cluster.

    Each training is one Dask task. Finished runs are stored in OUT/runs/ and not run again when
    the command is repeated; the results go to OUT/results.nc (an xarray Dataset). Prints the
    worst case over attacks of the final accuracy (mean over seeds).

    Defaults of the options are in byzdask.sweep (dask.config); with --cluster
    slurm|pbs|sge|lsf|... the job-queue options (--jobs, --queue, --walltime...; defaults in
    byzdask.jobqueue) describe the batch jobs.

    Examples: byzdask sweep examples/sweeps/nnm_heterogeneity.yaml --workers 2;
    byzdask sweep sweep.yaml --cluster thread --out results/;
    byzdask sweep sweep.yaml --cluster slurm --jobs 4 --cores 8 --processes 8 --walltime 02:00:00
    """
    import dask
    import distributed  # noqa: F401  (configures its loggers on import: quieten them after)

    from byzdask.errors import ByzdaskError
    from byzdask.experiments.analysis import worst_case_table
    from byzdask.experiments.config import load_config
    from byzdask.experiments.sweep import run_sweep

    jobqueue = _jobqueue_settings(cluster, jobqueue_options)
    try:
        config = load_config(config_path)
        out = out or f"{config.name}-sweep"
        with dask.config.set(jobqueue), _quiet_workers():
            ds = run_sweep(config, cluster=cluster, workers=workers, out=out, retry_failed=retry_failed,
                           progress=progress, echo=click.echo)
    except ByzdaskError as exc:
        raise click.ClickException(str(exc)) from exc
    status, errors, keys = (ds[v].values.ravel() for v in ("status", "error", "run_key"))
    failed = [(str(k), str(e)) for s, e, k in zip(status, errors, keys) if s == "failed"]
    for key, error in failed[:5]:
        click.echo(f"failed run {key}: {error}")
    if len(failed) > 5:
        click.echo(f"... and {len(failed) - 5} more failed runs (the 'error' variable holds each message)")
    click.echo("worst case over attacks, final accuracy (mean over seeds):")
    click.echo(worst_case_table(ds, "accuracy", "final", with_attack=True).to_string())

# -- report and jobscript (byzdask.experiments.analysis, plots, hpc) -------------------------------
def _report_dir(results: str, out: str | None) -> str:
    import os

    if out:
        return out
    if os.path.isdir(results) and not results.rstrip("/").endswith(".zarr"):
        return os.path.join(results, "report")
    stem = os.path.splitext(os.path.basename(results.rstrip("/")))[0]
    return os.path.join(os.path.dirname(os.path.abspath(results)), f"{stem}-report")


@main.command()
@click.argument("results", type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="directory of the plots (PNG) and tables (CSV)  [default: RESULTS/report for a sweep "
                   "directory, RESULTS-report next to a file]")
@click.option("--variable", default="accuracy", show_default=True,
              help="accuracy, loss, or for p2p worst_accuracy, consensus_distance")
@click.option("--metric", "metrics", type=click.Choice(["final", "best"]), multiple=True,
              help="final round or best round of the seed-averaged curve; repeat  [default: both]")
@click.option("--attack", "attacks", multiple=True, help="take the worst case over these attacks only; repeat")
@click.option("--plots/--no-plots", default=True, show_default=True, help="write the PNG plots")
def report(results: str, out: str | None, variable: str, metrics: tuple[str, ...], attacks: tuple[str, ...],
           plots: bool) -> None:
    """Print the tables of a sweep and write its plots.

    RESULTS is a sweep output directory (its results.nc), a netCDF file or a zarr store. Each
    curve is averaged over seeds, then reduced to its final or best round; the worst case is the
    minimum over attacks (the `none` baseline left out). Prints the worst-case table, the
    ranking of the rules and one per-attack table per cell (f, alpha, ...); writes them as CSV
    and the curves, heatmaps and worst-case bars as PNG.

    Examples: byzdask report digits-sweep; byzdask report results.nc --out report --metric best
    """
    import os

    from byzdask.errors import ByzdaskError
    from byzdask.experiments import analysis
    from byzdask.experiments.sweep import load_results

    metrics = metrics or ("final", "best")
    selected = list(attacks) or None
    out_dir = _report_dir(results, out)
    try:
        ds = load_results(results)
        if "status" in ds:
            counts = {s: int((ds.status == s).sum()) for s in ("ok", "failed", "skipped", "missing")}
            click.echo(f"runs: {', '.join(f'{n} {s}' for s, n in counts.items() if n)}")
        click.echo("worst case: the lowest over the attacks (the 'none' baseline left out) of each rule's "
                   "seed-averaged value")
        os.makedirs(out_dir, exist_ok=True)
        for metric in metrics:
            what = f"{metric} {variable} (mean over seeds)"
            table = analysis.worst_case_table(ds, variable, metric, attacks=selected, with_attack=True)
            click.echo(f"\nworst case over attacks, {what}:\n{table.to_string()}")
            ranks = analysis.ranking(ds, variable, metric, attacks=selected)
            click.echo(f"\nranking by worst case, {what}:\n{ranks.round(3).to_string()}")
            for cell in analysis.iter_cells(ds[variable]):
                per_attack = analysis.attack_table(ds, variable, metric, cell=cell)
                click.echo(f"\nper attack, {what}, {analysis.cell_label(cell)}:\n{per_attack.round(3).to_string()}")
            analysis.worst_case_table(ds, variable, metric, attacks=selected).to_csv(
                os.path.join(out_dir, f"worst_case_{metric}.csv"))
            ranks.to_csv(os.path.join(out_dir, f"ranking_{metric}.csv"))
            analysis.attack_table(ds, variable, metric).to_csv(os.path.join(out_dir, f"per_attack_{metric}.csv"))
        if plots:
            from byzdask.experiments.plots import write_plots

            written = write_plots(ds, out_dir, variable, metrics=metrics)
            click.echo(f"\nwrote {len(written)} plots and {3 * len(metrics)} tables to {out_dir}")
        else:
            click.echo(f"\nwrote {3 * len(metrics)} tables to {out_dir}")
    except ByzdaskError as exc:
        raise click.ClickException(str(exc)) from exc


def _jobqueue_systems() -> list[str]:
    from byzdask.experiments.hpc import SYSTEMS

    return list(SYSTEMS)


def _jobqueue_options(command):
    from byzdask.experiments.hpc import click_options

    return click_options(jobs=False)(command)


@main.command()
@click.option("--cluster", "system", type=click.Choice(_jobqueue_systems()), required=True,
              help="batch system")
@click.option("--scheduler-address", default=None,
              help="scheduler address written into the worker command  [default: a placeholder]")
@_jobqueue_options
def jobscript(system: str, scheduler_address: str | None, **options) -> None:
    """Print the job script that --cluster SYSTEM submits for each job.

    Options not given come from byzdask.jobqueue in dask.config (byzdask.yaml,
    ~/.config/dask/*.yaml, DASK_BYZDASK__JOBQUEUE__QUEUE=... variables), then from
    dask-jobqueue's own jobqueue.SYSTEM settings. Nothing is submitted or started.

    Examples: byzdask jobscript --cluster slurm --queue short --account proj1 --walltime 01:00:00
    --cores 8 --memory 32GiB --processes 2 --job-extra=--gres=gpu:1 --prologue "module load cuda"
    """
    from byzdask.errors import ByzdaskError
    from byzdask.experiments.hpc import job_script, pop_click_options

    try:
        click.echo(job_script(system, scheduler_address=scheduler_address, capabilities=("cpu",),
                              **pop_click_options(options)), nl=False)
    except ByzdaskError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
