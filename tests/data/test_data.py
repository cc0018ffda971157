import numpy as np
import pytest
import torch

from byzdask.data import (
    Dataset,
    dirichlet_partition,
    iid_partition,
    label_skew,
    load_digits,
    load_torchvision,
    partition_dataset,
)
from byzdask.errors import ConfigurationError, InputError


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0)


def test_digits_shapes_dtypes_and_standardisation(digits):
    tr, te = digits.train, digits.test
    assert (len(tr), len(te)) == (1437, 360)
    assert tr.x.dtype == torch.float32 and tr.y.dtype == torch.int64
    assert tr.input_shape == (64,) and tr.num_classes == 10
    mean, std = tr.x.mean(0), tr.x.std(0, unbiased=False)
    assert torch.allclose(mean, torch.zeros(64), atol=1e-5)
    varying = std > 0
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-4)


def test_digits_split_is_stratified_seeded_and_disjoint(digits):
    again = load_digits(seed=0)
    assert torch.equal(again.train.x, digits.train.x) and torch.equal(again.test.y, digits.test.y)
    other = load_digits(seed=1)
    assert not torch.equal(other.train.y, digits.train.y)
    # class proportions within one sample of the full set's
    full = np.bincount(np.concatenate([digits.train.y.numpy(), digits.test.y.numpy()]), minlength=10)
    assert np.all(np.abs(digits.test.class_counts() - full * 0.2) <= 1.0)
    # no sample in both splits (rows of the unit-scaled images)
    unit = load_digits(seed=0, scaling="unit")
    tr_rows = {tuple(r) for r in unit.train.x.numpy().round(4)}
    dup_free = sum(tuple(r) in tr_rows for r in unit.test.x.numpy().round(4))
    assert dup_free < 5  # digits holds a handful of identical images; a leak would give hundreds


def test_digits_unit_scaling_and_image_shape():
    split = load_digits(seed=0, scaling="unit", image=True)
    assert split.train.input_shape == (1, 8, 8) and split.train.x.shape[1:] == (1, 8, 8)
    assert float(split.train.x.min()) == 0.0 and float(split.train.x.max()) == 1.0


@pytest.mark.parametrize("kwargs", [{"scaling": "minmax"}, {"test_fraction": 0.0}, {"test_fraction": 1.5}])
def test_digits_bad_parameters(kwargs):
    with pytest.raises(ConfigurationError):
        load_digits(**kwargs)


def test_dataset_validation():
    x, y = torch.zeros(3, 2), torch.tensor([0, 1, 2])
    with pytest.raises(InputError, match="float32"):
        Dataset(x.double(), y, 3, (2,))
    with pytest.raises(InputError, match="int64"):
        Dataset(x, y.int(), 3, (2,))
    with pytest.raises(InputError, match="samples"):
        Dataset(x, y[:2], 3, (2,))
    with pytest.raises(InputError, match="input_shape"):
        Dataset(x, y, 3, (3,))
    with pytest.raises(InputError, match="labels"):
        Dataset(x, y, 2, (2,))
    with pytest.raises(InputError, match="torch"):
        Dataset(np.zeros((3, 2), np.float32), y, 3, (2,))


@pytest.mark.parametrize("n,k", [(10, 3), (1437, 10), (7, 7), (100, 1)])
def test_iid_covers_exactly_once_and_balanced(n, k):
    parts = iid_partition(n, k, seed=3)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid_partition(n, k, seed=3)))
    if k > 1:
        assert any(not np.array_equal(a, b) for a, b in zip(parts, iid_partition(n, k, seed=4)))


@pytest.mark.parametrize("alpha", [0.05, 0.5, 10.0])
def test_dirichlet_covers_exactly_once_with_min_size(digits, alpha):
    labels = digits.train.y.numpy()
    parts = dirichlet_partition(labels, 10, alpha=alpha, seed=0, min_size=8)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))
    assert min(len(p) for p in parts) >= 8
    again = dirichlet_partition(labels, 10, alpha=alpha, seed=0, min_size=8)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_dirichlet_skew_is_measurable(digits):
    tr = digits.train
    iid = label_skew(partition_dataset(tr, 10, kind="iid", seed=0))
    skews = [label_skew(partition_dataset(tr, 10, kind="dirichlet", alpha=a, seed=0)) for a in (0.1, 1.0, 100.0)]
    assert iid < 0.1
    assert skews[0] > 0.5 > skews[2]
    assert skews[0] > skews[1] > skews[2]


def test_partition_errors(digits):
    with pytest.raises(ConfigurationError, match="num_nodes"):
        iid_partition(10, 0)
    with pytest.raises(InputError, match="need"):
        iid_partition(3, 5)
    with pytest.raises(ConfigurationError, match="alpha"):
        dirichlet_partition([0, 1, 1], 2, alpha=0.0)
    with pytest.raises(ConfigurationError, match="min_size"):
        dirichlet_partition([0, 1, 1], 2, alpha=1.0, min_size=0)
    with pytest.raises(InputError, match="need 10"):
        dirichlet_partition([0, 1, 1, 0], 2, alpha=1.0, min_size=5)
    with pytest.raises(InputError, match="integer"):
        dirichlet_partition([0.5, 1.0], 2, alpha=1.0, min_size=1)
    with pytest.raises(ConfigurationError, match="kind"):
        partition_dataset(digits.train, 3, kind="shards")
    with pytest.raises(InputError):
        label_skew([])


def test_torchvision_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "MNIST")):
        load_torchvision("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_torchvision("cifar10", tmp_path)
    with pytest.raises(ConfigurationError, match="svhn"):
        load_torchvision("svhn", tmp_path)

