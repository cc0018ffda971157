"""byzdask: Byzantine-robust distributed learning on Dask."""

from byzdask._version import __version__

__all__ = ["__version__"]
