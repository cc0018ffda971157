"""byzdask: Byzantine-robust distributed learning on Dask."""

from byzdask import config as _config  # noqa: F401  (merges byzdask.yaml into dask.config)
from byzdask._version import __version__

__all__ = ["__version__"]
