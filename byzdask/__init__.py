"""byzdask: Byzantine-robust distributed learning on Dask."""

from byzdask import config as _config  # noqa: F401  (merges byzdask.yaml into dask.config)
from byzdask._version import __version__
from byzdask.engine.executor import OperatorExecutor, run_operator

__all__ = ["OperatorExecutor", "__version__", "run_operator"]
