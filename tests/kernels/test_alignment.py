"""Inputs at odd addresses (as distributed delivers a lone array to a worker) are realigned once."""

import numpy as np
import pytest

from byzdask.kernels.arrays import as_batch
from byzdask.registry import build


def misaligned(x: np.ndarray, offset: int = 3) -> np.ndarray:
    """A copy of ``x`` whose data starts ``offset`` bytes past an aligned address."""
    raw = np.empty(x.nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    out = np.ndarray(x.shape, dtype=x.dtype, buffer=raw.data, offset=start)
    out[...] = x
    assert not out.flags.aligned
    return out


def test_as_batch_realigns_a_misaligned_stacked_array():
    x = np.random.default_rng(0).standard_normal((5, 33)).astype(np.float32)
    odd = misaligned(x)
    batch = as_batch(odd)
    assert batch.matrix.flags.aligned
    np.testing.assert_array_equal(batch.matrix, x)
    assert np.shares_memory(as_batch(x).matrix, x)  # an aligned, contiguous input is not copied


@pytest.mark.parametrize("name,kwargs", [("cwmed", {}), ("cwtm", {"f": 2}), ("meamed", {"f": 2}),
                                         ("krum", {"f": 2}), ("gm", {}), ("cc", {"c_tau": 1.0})])
def test_rules_give_the_same_result_on_misaligned_input(name, kwargs):
    x = np.random.default_rng(1).standard_normal((9, 1000)).astype(np.float32)
    rule = build("aggregator", name, **kwargs)
    np.testing.assert_array_equal(rule.aggregate(misaligned(x)), rule.aggregate(x))
