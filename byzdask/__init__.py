"""byzdask: Byzantine-robust distributed learning on Dask."""

from byzdask import config as _config  # noqa: F401  (merges byzdask.yaml into dask.config)
from byzdask._version import __version__
from byzdask.engine.executor import OperatorExecutor, run_operator

__all__ = ["OperatorExecutor", "__version__", "aggregate_blocks", "aggregate_blocks_async", "run_operator"]

_LAZY = {"aggregate_blocks": "byzdask.engine.blockwise", "aggregate_blocks_async": "byzdask.engine.blockwise"}


def __getattr__(name: str):
    # imported on first use: they pull in every aggregation rule
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'byzdask' has no attribute {name!r}")
