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
@click.option("--n-honest", default=10, show_default=True, help="honest vectors")
@click.option("--n-byzantine", "-f", default=3, show_default=True, help="Byzantine vectors")
@click.option("--dim", "-d", default=100_000, show_default=True, help="vector dimension")
@click.option("--seed", default=0, show_default=True)
def demo(n_honest: int, n_byzantine: int, dim: int, seed: int) -> None:
    """Aggregate honest and attacked gradients with every rule and print a table.

    Example: byzdask demo --n-honest 10 -f 3 -d 100000
    """
    from byzdask.demo import run_demo  # noqa: PLC0415

    click.echo(run_demo(n_honest=n_honest, n_byzantine=n_byzantine, dim=dim, seed=seed))


if __name__ == "__main__":
    main()
