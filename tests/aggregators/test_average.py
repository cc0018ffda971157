import numpy as np
import pytest
import torch

from byzdask.aggregators import Average
from byzdask.errors import InputError
from byzdask.testing import (
    assert_permutation_invariant,
    assert_subtasks_match,
    assert_translation_equivariant,
)


def test_average_matches_mean(rng):
    x = rng.normal(size=(7, 3, 5))
    out = Average().aggregate(list(x))
    assert out.shape == (3, 5) and out.dtype == np.float64
    np.testing.assert_allclose(out, x.mean(axis=0))


def test_average_torch_keeps_family_and_dtype():
    x = [torch.randn(4, 2, dtype=torch.float32) for _ in range(5)]
    out = Average().aggregate(x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (4, 2)
    torch.testing.assert_close(out, torch.stack(x).mean(0))


def test_average_propagates_nan(rng):
    x = rng.normal(size=(4, 3))
    x[1, 2] = np.nan
    assert np.isnan(Average().aggregate(x)[2])


def test_average_properties(rng):
    x = rng.normal(size=(9, 40))
    assert_permutation_invariant(Average(), x)
    assert_translation_equivariant(Average(), x)
    assert_subtasks_match(Average(), x, n_blocks=4)


@pytest.mark.parametrize("bad, msg", [([], "empty"), ([np.zeros(3), np.zeros(4)], "one shape"),
                                      ([np.zeros(3), torch.zeros(3)], "family"),
                                      ([np.zeros(3, dtype=int)] * 2, "floating")])
def test_average_bad_inputs(bad, msg):
    with pytest.raises(InputError, match=msg):
        Average().aggregate(bad)
