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
@click.option("--n", "n", default=13, show_default=True, help="n used to state each rule's tolerated f")
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
    keys = [k for k in ("name", "class", "max_f", "reference") if any(k in r for r in rows)]
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    click.echo("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        click.echo("  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--cluster", default="local", show_default=True,
              help="local (worker processes), thread, tcp://host:port, or slurm/pbs/sge/lsf/...")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="output directory (runs/, results.nc)  [default: ./<config name>-sweep]")
@click.option("--workers", type=int, default=None,
              help="workers of a cluster byzdask starts  [default: byzdask.sweep.workers, else the CPU count]")
@click.option("--retry-failed/--no-retry-failed", default=True, show_default=True,
              help="on resume, run again the runs that failed")
@click.option("--progress/--no-progress", default=True, show_default=True, help="progress bar of the runs")
def sweep(config_path: str, cluster: str, out: str | None, workers: int | None, retry_failed: bool,
          progress: bool) -> None:
    """Run a sweep (rules x pre-aggregators x attacks x f x partitions x seeds) on a Dask cluster.

    Each training is one Dask task. Finished runs are stored in OUT/runs/ and not run again when
    the command is repeated; the results go to OUT/results.nc (an xarray Dataset). Prints the
    worst case over attacks of the final accuracy (mean over seeds).

    Examples: byzdask sweep examples/sweeps/nnm_heterogeneity.yaml --workers 2;
    byzdask sweep sweep.yaml --cluster thread --out results/
    """
    import logging
    import os

    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)

    from byzdask.errors import ByzdaskError
    from byzdask.experiments.analysis import worst_case_table
    from byzdask.experiments.config import load_config
    from byzdask.experiments.sweep import run_sweep

    try:
        config = load_config(config_path)
        out = out or f"{config.name}-sweep"
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

if __name__ == "__main__":
    main()
