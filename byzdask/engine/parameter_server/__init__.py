"""Parameter-server training on a Dask cluster: :class:`ParameterServer`."""

from byzdask.engine.parameter_server.ps import (
    ParameterServer,
    byzantine_step,
    honest_step,
)

__all__ = ["ParameterServer", "byzantine_step", "honest_step"]
