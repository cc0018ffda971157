import numpy as np
import pytest

from byzdask.data import extreme_partition, gamma_partition, label_skew, load_digits, partition_dataset, skew_summary
from byzdask.errors import ConfigurationError
from byzdask.experiments.config import SweepConfig


@pytest.fixture(scope="module")
def train():
    return load_digits(seed=0).train


def _covers(parts, n):
    return sorted(np.concatenate(parts).tolist()) == list(range(n))


def test_gamma_partition_covers_and_interpolates_between_iid_and_sorted(train):
    labels = train.y.numpy()
    skews = []
    for gamma in (1.0, 0.66, 0.33, 0.0):
        parts = gamma_partition(labels, 10, gamma=gamma, seed=3)
        assert _covers(parts, labels.size)
        assert max(map(len, parts)) - min(map(len, parts)) <= 2
        skews.append(label_skew([train.subset(p) for p in parts]))
    assert skews == sorted(skews), skews  # more sorted data, more skew
    assert skews[0] < 0.1 and skews[-1] > 0.75


def test_gamma_zero_is_extreme_and_extreme_gives_contiguous_label_ranges(train):
    labels = train.y.numpy()
    ext = extreme_partition(labels, 10, seed=1)
    for a, b in zip(ext, gamma_partition(labels, 10, gamma=0.0, seed=1)):
        assert np.array_equal(a, b)
    ranges = [(labels[p].min(), labels[p].max()) for p in ext]
    assert all(hi_prev <= lo for (_, hi_prev), (lo, _) in zip(ranges, ranges[1:]))
    assert all(len(set(labels[p].tolist())) <= 3 for p in ext)


def test_gamma_partition_is_seeded_and_checks_gamma(train):
    labels = train.y.numpy()
    a, b = gamma_partition(labels, 5, gamma=0.5, seed=2), gamma_partition(labels, 5, gamma=0.5, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(ConfigurationError, match="gamma must be a number in"):
        gamma_partition(labels, 5, gamma=1.5)


def test_partition_dataset_kinds_and_summary(train):
    shards = partition_dataset(train, 10, kind="extreme", seed=0)
    assert sum(len(s) for s in shards) == len(train)
    line = skew_summary(shards)
    assert line.startswith("label skew 0.8") and "classes per shard min 1" in line
    with pytest.raises(ConfigurationError, match="kind must be one of"):
        partition_dataset(train, 10, kind="sorted")


def test_sweep_gamma_dimension_reaches_the_train_config():
    cfg = SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1],
                                          "gamma": [1.0, 0.0]}, "training": {"honest": 4, "rounds": 2}})
    assert cfg.dims[-2:] == ("gamma", "seed") and cfg.coords["gamma"] == [1.0, 0.0]
    configs = [p.train_config() for p in cfg.points()]
    assert [(c.partition, c.gamma) for c in configs] == [("gamma", 1.0), ("gamma", 0.0)]
    plain = SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1]}})
    assert "gamma" not in plain.points()[0].settings  # run keys of sweeps without gamma are unchanged
    with pytest.raises(ConfigurationError, match="cannot be combined"):
        SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1],
                                        "gamma": [0.5], "partitions": [{"dirichlet": 0.1}]}})
    with pytest.raises(ConfigurationError, match=r"grid.gamma entry 2"):
        SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["signflip"], "f": [1], "gamma": [2]}})
