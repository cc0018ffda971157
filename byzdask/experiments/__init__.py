"""Experiments: sweeps of trainings over rules, attacks, f, data partitions and seeds.

:func:`run_sweep` runs a :class:`SweepConfig` on a Dask cluster and returns an
``xarray.Dataset``; :func:`load_results` reads one back.
"""

from byzdask.experiments.config import RunSpec, SweepConfig, load_config
from byzdask.experiments.sweep import (
           collect_results,
           load_results,
           run_point,
           run_sweep,
           save_results,
)

__all__ = ["RunSpec", "SweepConfig", "collect_results", "load_config", "load_results", "run_point", "run_sweep",
           "save_results"]
