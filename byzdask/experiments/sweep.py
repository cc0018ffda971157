"""Run a sweep: one training per Dask task, results gathered into an ``xarray.Dataset``.

Each grid point of a :class:`~byzdask.experiments.config.SweepConfig` becomes one task that
builds its nodes (:func:`byzdask.train.build_job`) and runs the in-process training
(:class:`~byzdask.engine.node.training.InProcessParameterServer` or
:class:`~byzdask.engine.node.training.InProcessPeerToPeer`) with one torch thread. Everything
random in a run derives from its seed, so a run gives the same numbers on any worker.

With an output directory, every finished run is written to ``runs/<key>.json`` (``key``: a
hash of the run's settings) as soon as it comes back; starting the sweep again loads those
files and submits only the missing runs (and, unless told otherwise, the failed ones). A run
that raises is recorded with status ``"failed"`` and its error; the others go on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from byzdask.errors import ConfigurationError
from byzdask.experiments.config import RunSpec, SweepConfig, load_config

__all__ = ["collect_results", "load_results", "run_point", "run_sweep", "save_results"]

logger = logging.getLogger(__name__)

#: Per-round variables of every run, and those only peer-to-peer runs have.
PS_VARIABLES = ("accuracy", "loss")
P2P_VARIABLES = ("accuracy", "loss", "worst_accuracy", "consensus_distance")
RESULTS_FILE = "results.nc"
_BUILD_LOCK = threading.Lock()


# -- one run (runs on a worker) ----------------------------------------------------------------
def _train(settings: Mapping[str, Any], eval_every: int) -> list[dict[str, Any]]:
    """Build the nodes of one run and train them in this process; return the evaluations."""
    import torch

    from byzdask.engine.node.training import (
        InProcessParameterServer,
        InProcessPeerToPeer,
    )
    from byzdask.train import build_job, parse_topology

    spec = RunSpec(coords={}, settings=dict(settings))
    config = spec.train_config()
    torch.set_num_threads(1)
    # Model construction seeds torch's global generator: one build at a time per process keeps
    # runs on thread workers reproducible.
    with _BUILD_LOCK:
        job = build_job(config)
    test = job["split"].test
    if config.mode == "ps":
        trainer = InProcessParameterServer(job["honest"], job["byzantine"], aggregator=job["aggregator"],
                                           pre_aggregators=job["pre_aggregators"], lr=config.lr,
                                           weight_decay=config.weight_decay, test=test)
    else:
        h, b = config.honest, len(job["byzantine"])
        topology = parse_topology(config.topology, h + b, list(range(h, h + b)), seed=config.seed)
        trainer = InProcessPeerToPeer(job["honest"], job["byzantine"], topology, aggregator=job["aggregator"],
                                      pre_aggregators=job["pre_aggregators"], lr=config.lr,
                                      weight_decay=config.weight_decay, test=test)
    return trainer.run(config.rounds, eval_every=eval_every)


def run_point(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Run one training from its settings (a :class:`RunSpec`'s ``settings``); never raises.

    Returns
    -------
    dict
        ``{"status": "ok" | "failed", "error", "history", "seconds", "worker"}``; ``history`` is
        the list of evaluations ``{"round", "accuracy", "loss", ...}``.

    Examples
    --------
    >>> from byzdask.experiments.config import SweepConfig
    >>> cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1]},
    ...                              "training": {"honest": 4, "rounds": 4, "eval_every": 2}})
    >>> out = run_point(cfg.points()[0].settings)
    >>> out["status"], [h["round"] for h in out["history"]]
    ('ok', [2, 4])
    """
    start = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}:{threading.current_thread().name}"
    try:
        history = _train(settings, int(settings["eval_every"]))
    except Exception as exc:  # noqa: BLE001 (recorded in the results; the sweep goes on)
        logger.warning("run %s failed: %s", dict(settings), exc)
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": "".join(tb[-6:]),
                "history": [], "seconds": time.perf_counter() - start, "worker": worker}
    return {"status": "ok", "error": "", "history": history, "seconds": time.perf_counter() - start,
            "worker": worker}


# -- the run store -------------------------------------------------------------------------------
def _runs_dir(out: Path) -> Path:
    return out / "runs"


def _read_run(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("ignoring the unreadable run file %s: %s", path, exc)
        return None


def _write_run(out: Path, spec: RunSpec, result: Mapping[str, Any]) -> None:
    directory = _runs_dir(out)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"key": spec.key, "settings": spec.settings, **result}
    tmp = directory / f".{spec.key}.json.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        json.dump(record, file, default=_json_default)
    os.replace(tmp, directory / f"{spec.key}.json")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a run file")


# -- the cluster ---------------------------------------------------------------------------------
def _default_workers() -> int:
    from byzdask import config as byz_config

    value = byz_config.get("sweep.workers", default=None)
    return int(value) if value else max(1, os.cpu_count() or 1)


class _Cluster:
    """The synchronous client a sweep submits to, and whether the sweep must close it."""

    def __init__(self, client: Any = None, pool: Any = None, cluster: str = "local", workers: int | None = None):
        self.pool, self.owned_pool, self.client = None, False, client
        if client is not None:
            if getattr(client, "asynchronous", False):
                raise ConfigurationError("run_sweep needs a synchronous distributed.Client, got an asynchronous one")
            return
        if pool is None:
            from byzdask.train import make_pool

            if cluster == "none":
                raise ConfigurationError("a sweep runs on a cluster: use local, thread, an address, or a job queue")
            pool = make_pool(cluster, workers or _default_workers())
            self.owned_pool = True
        elif not self._is_pool(pool):
            raise ConfigurationError(f"pool must be an ActorPool, got {type(pool).__name__}")
        elif pool.running and getattr(pool, "_runner", None) is None:
            raise ConfigurationError("run_sweep needs an ActorPool used synchronously (pool.start_sync() or "
                                     "`with pool.sync():`), or a stopped one; got one started with `await`")
        self.owned_pool = self.owned_pool or not pool.running
        self.pool = pool
        self.client = pool.start_sync()

    @staticmethod
    def _is_pool(pool: Any) -> bool:
        from byzdask.engine.graph.pool import ActorPool

        return isinstance(pool, ActorPool)

    @property
    def dashboard(self) -> str | None:
        if self.pool is not None:
            return self.pool.dashboard_link
        try:
            return self.client.dashboard_link
        except (KeyError, AttributeError):
            return None

    def close(self) -> None:
        if self.owned_pool and self.pool is not None:
            self.pool.shutdown_sync()


# -- the sweep -----------------------------------------------------------------------------------
def run_sweep(config: Any, *, client: Any = None, pool: Any = None, cluster: str = "local",
              workers: int | None = None, out: str | os.PathLike | None = None, retry_failed: bool = True,
              progress: bool = True, echo: Callable[[str], None] | None = None) -> Any:
    """Run every grid point of ``config`` as a Dask task and return the results as a Dataset.

    Parameters
    ----------
    config : SweepConfig, mapping or path to a YAML file
    client : distributed.Client, optional
        A synchronous client to submit to (left open).
    pool : ActorPool, optional
        Used through :meth:`~byzdask.engine.graph.pool.ActorPool.start_sync`; closed at the
        end only when this call started it.
    cluster : str
        When neither is given: ``"local"`` (worker processes), ``"thread"``, a scheduler address,
        or a dask-jobqueue system (see :func:`byzdask.train.make_pool`); started and closed here.
    workers : int, optional
        Workers of a cluster started here (default ``byzdask.sweep.workers``, else the CPU count).
    out : path, optional
        Output directory: per-run files in ``out/runs/`` (resume) and ``out/results.nc``.
    retry_failed : bool
        On resume, run again the points whose stored run failed.
    progress : bool
        A tqdm bar over the finished runs.
    echo : callable, optional
        Receives the lines meant for the user (the dashboard link, the counts); default: logging.

    Returns
    -------
    xarray.Dataset
        See :func:`collect_results`.

    Examples
    --------
    >>> cfg = {"grid": {"aggregators": ["cwtm"], "attacks": ["signflip", "little"], "f": [1]},
    ...        "training": {"honest": 4, "rounds": 2, "eval_every": 2}}
    >>> ds = run_sweep(cfg, cluster="thread", workers=2, progress=False)
    >>> dict(ds.sizes)["attack"], [str(s) for s in ds.status.values.ravel()]
    (2, ['ok', 'ok'])
    """
    cfg = load_config(config)
    echo = echo or (lambda line: logger.info("%s", line))
    out_path = Path(out) if out is not None else None
    points = cfg.points()
    results: dict[str, dict[str, Any]] = {}
    for spec in points:
        if spec.skip_reason:
            results[spec.key] = {"status": "skipped", "error": spec.skip_reason, "history": [], "seconds": math.nan}
    resumed = 0
    if out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        (out_path / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        for spec in points:
            if spec.key in results:
                continue
            path = _runs_dir(out_path) / f"{spec.key}.json"
            if path.exists():
                stored = _read_run(path)
                if stored is not None and (stored.get("status") == "ok" or not retry_failed):
                    results[spec.key] = stored
                    resumed += 1
    todo = list({spec.key: spec for spec in points if spec.key not in results}.values())
    start = time.perf_counter()
    echo(f"sweep {cfg.name!r}: {len(points)} runs ({len(todo)} to run, {resumed} resumed, "
         f"{sum(1 for p in points if p.skip_reason)} skipped)")
    if todo:
        _submit_all(cfg, todo, results, client=client, pool=pool, cluster=cluster, workers=workers,
                    out=out_path, progress=progress, echo=echo)
    ds = collect_results(cfg, results)
    ds.attrs.update({"runs_executed": len(todo), "runs_resumed": resumed,
                     "seconds": round(time.perf_counter() - start, 3)})
    counts = {s: int((ds.status == s).sum()) for s in ("ok", "failed", "skipped")}
    echo(f"sweep {cfg.name!r} done in {ds.attrs['seconds']:.1f} s: {counts}")
    if out_path is not None:
        save_results(ds, out_path / RESULTS_FILE)
        echo(f"results: {out_path / RESULTS_FILE}")
    return ds


def _submit_all(cfg: SweepConfig, todo: list[RunSpec], results: dict[str, dict[str, Any]], *, client: Any,
                pool: Any, cluster: str, workers: int | None, out: Path | None, progress: bool,
                echo: Callable[[str], None]) -> None:
    from distributed import as_completed

    holder = _Cluster(client, pool, cluster, workers)
    try:
        echo(f"dashboard: {holder.dashboard or 'not served'}")
        by_key = {}
        futures = []
        for spec in todo:
            fut = holder.client.submit(run_point, spec.settings, key=f"byzdask-run-{spec.key}", pure=False)
            by_key[fut.key] = spec
            futures.append(fut)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(futures), desc=f"sweep {cfg.name}", unit="run")
        try:
            for fut in as_completed(futures):
                spec = by_key[fut.key]
                if fut.status == "error":
                    exc = fut.exception()
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "history": [],
                              "seconds": math.nan}
                else:
                    result = fut.result()
                fut.release()
                results[spec.key] = result
                if result["status"] != "ok":
                    logger.warning("run %s failed: %s", spec.coords, result["error"])
                if out is not None:
                    _write_run(out, spec, result)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    finally:
        holder.close()


# -- results ---------------------------------------------------------------------------------------
def collect_results(config: Any, results: Mapping[str, Mapping[str, Any]]) -> Any:
    """Arrange run results (``{run key: run_point output}``) as an ``xarray.Dataset``.

    Dimensions: ``aggregator, pre_aggregator, attack, f, alpha``, the optional grid dimensions
    (``momentum``, ``lr``, ``batch_size``), ``seed``, and ``round`` (the evaluation rounds).
    Per-round variables: ``accuracy``, ``loss`` (test split), and for p2p ``worst_accuracy``
    (the worst honest node) and ``consensus_distance``; NaN where a run failed, was skipped
    or is missing. Per-run variables: ``status`` (``ok``, ``failed``, ``skipped``,
    ``missing``), ``error`` (empty when ok), ``seconds``, ``run_key``. Attributes: ``config``
    (the YAML text), ``name``, ``mode``, ``byzdask_version``.

    Examples
    --------
    >>> cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwmed"], "attacks": ["none"], "f": [0]},
    ...                              "training": {"rounds": 4, "eval_every": 2}})
    >>> ds = collect_results(cfg, {})
    >>> dict(ds.accuracy.sizes)
    {'aggregator': 1, 'pre_aggregator': 1, 'attack': 1, 'f': 1, 'alpha': 1, 'seed': 1, 'round': 2}
    >>> str(ds.status.item())
    'missing'
    """
    import xarray as xr

    from byzdask._version import __version__

    cfg = load_config(config)
    dims = cfg.dims
    coords = cfg.coords
    shape = tuple(len(coords[d]) for d in dims)
    rounds = cfg.eval_rounds
    names = P2P_VARIABLES if cfg.training["mode"] == "p2p" else PS_VARIABLES
    values = {v: np.full((*shape, len(rounds)), np.nan) for v in names}
    status = np.full(shape, "missing", dtype=object)
    error = np.full(shape, "", dtype=object)
    seconds = np.full(shape, np.nan)
    keys = np.full(shape, "", dtype=object)
    position = {r: i for i, r in enumerate(rounds)}
    for flat, spec in enumerate(cfg.points()):
        idx = np.unravel_index(flat, shape)
        keys[idx] = spec.key
        result = results.get(spec.key)
        if result is None:
            continue
        status[idx] = result.get("status", "failed")
        error[idx] = result.get("error") or ""
        seconds[idx] = result.get("seconds", np.nan)
        if status[idx] != "ok":
            continue
        for record in result.get("history", []):
            j = position.get(int(record["round"]))
            if j is None:
                continue
            for v in names:
                if record.get(v) is not None:
                    values[v][(*idx, j)] = float(record[v])
    data_vars: dict[str, Any] = {v: ((*dims, "round"), a) for v, a in values.items()}
    data_vars["status"] = (dims, status.astype(str))
    data_vars["error"] = (dims, error.astype(str))
    data_vars["seconds"] = (dims, seconds)
    data_vars["run_key"] = (dims, keys.astype(str))
    all_coords = {d: np.asarray(coords[d]) for d in dims}
    all_coords["round"] = np.asarray(rounds)
    ds = xr.Dataset(data_vars, coords=all_coords)
    ds.attrs.update({"name": cfg.name, "mode": cfg.training["mode"], "config": cfg.to_yaml(),
                     "byzdask_version": __version__})
    for v in names:
        ds[v].attrs["long_name"] = {"accuracy": "test accuracy (mean over honest nodes for p2p)",
                                    "loss": "test loss (mean over honest nodes for p2p)",
                                    "worst_accuracy": "test accuracy of the worst honest node",
                                    "consensus_distance": "mean squared distance of honest models to their mean"}[v]
    return ds


def save_results(ds: Any, path: str | os.PathLike) -> Path:
    """Write a sweep Dataset to netCDF (``.nc``, netCDF4 engine) or zarr (``.zarr``); return the path.

    Examples
    --------
    >>> import tempfile, os
    >>> cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwmed"], "attacks": ["none"], "f": [0]}})
    >>> path = save_results(collect_results(cfg, {}), os.path.join(tempfile.mkdtemp(), "r.nc"))
    >>> str(load_results(path).status.item())
    'missing'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zarr":
        ds.to_zarr(path, mode="w")
        return path
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)
    return path


def load_results(path: str | os.PathLike) -> Any:
    """Read a Dataset written by :func:`save_results` (or a sweep output directory) into memory."""
    import xarray as xr

    path = Path(path)
    if path.is_dir() and path.suffix != ".zarr":
        path = path / RESULTS_FILE
    if not path.exists():
        raise ConfigurationError(f"no sweep results at {str(path)!r}")
    try:
        if path.suffix == ".zarr":
            return xr.open_zarr(path).load()
        return xr.load_dataset(path, engine="netcdf4")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # netCDF4/zarr report corruption so
        raise ConfigurationError(f"cannot read sweep results {str(path)!r} (corrupt or not a results file): "
                                 f"{exc}") from exc
