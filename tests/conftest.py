import importlib.util

import numpy as np
import pytest

try:
    import cupy

    # cupy imports without a driver; its tests need a device
    HAVE_CUPY = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # noqa: BLE001 - ImportError, or CUDARuntimeError without a driver
    HAVE_CUPY = False

HAVE_JOBQUEUE = importlib.util.find_spec("dask_jobqueue") is not None

try:
    import torch

    HAVE_CUDA = torch.cuda.is_available()
except Exception:  # noqa: BLE001 - a broken CUDA setup must only skip the GPU tests
    HAVE_CUDA = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("requires_cupy") and not HAVE_CUPY:
            item.add_marker(pytest.mark.skip(reason="cupy is not installed, or finds no CUDA device"))
        if item.get_closest_marker("requires_gpu") and not HAVE_CUDA:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))
        if item.get_closest_marker("requires_jobqueue") and not HAVE_JOBQUEUE:
            item.add_marker(pytest.mark.skip(reason="dask-jobqueue is not installed (pip install 'byzdask[hpc]')"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
