import pickle

import numpy as np
import pytest
import torch
from torch import nn

from byzdask.errors import ConfigurationError, InputError
from byzdask.models import (
    MLP,
    MODELS,
    LogisticRegression,
    SmallCNN,
    build_model,
    flat_grad,
    get_flat_params,
    num_params,
    set_flat_params,
)


@pytest.mark.parametrize(("name", "shape", "count"), [
    ("logreg", (64,), 650), ("mlp", (64,), 4810), ("cnn", (1, 28, 28), None), ("cnn", (3, 32, 32), None),
    ("cnn", (1, 8, 8), None), ("logreg", (1, 8, 8), 650),
])
def test_registry_builds_models_that_run(name, shape, count):
    model = build_model(name, input_shape=shape, num_classes=10, seed=0)
    out = model(torch.zeros(3, *shape))
    assert out.shape == (3, 10)
    if count is not None:
        assert num_params(model) == count


def test_build_model_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    c = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=6)
    assert torch.equal(get_flat_params(a), get_flat_params(b))
    assert not torch.equal(get_flat_params(a), get_flat_params(c))


def test_flat_vector_round_trip_matches_parameter_layout():
    model = MLP(5, 3, hidden=(4, 4))
    vec = torch.arange(num_params(model), dtype=torch.float32)
    set_flat_params(model, vec)
    assert torch.equal(get_flat_params(model), vec)
    # order is model.parameters() order, each tensor flattened row-major
    first = next(model.parameters())
    assert torch.equal(first.detach().reshape(-1), vec[: first.numel()])
    # numpy and float64 vectors are accepted, stored as the model's dtype
    set_flat_params(model, np.ones(num_params(model)))
    assert get_flat_params(model).dtype == torch.float32 and float(get_flat_params(model).sum()) == num_params(model)
    # get_flat_params is a copy
    copy = get_flat_params(model)
    copy.zero_()
    assert float(get_flat_params(model).sum()) == num_params(model)


def test_flat_grad_matches_autograd_and_fills_missing_with_zeros():
    model = LogisticRegression(4, 3)
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = nn.functional.cross_entropy(model(x), y)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.allclose(flat_grad(model), expected)
    model.zero_grad(set_to_none=True)
    assert torch.equal(flat_grad(model), torch.zeros(num_params(model)))


def test_models_pickle():
    for name, shape in [("logreg", (64,)), ("mlp", (64,)), ("cnn", (1, 8, 8))]:
        model = build_model(name, input_shape=shape, num_classes=10, seed=1)
        again = pickle.loads(pickle.dumps(model))
        assert torch.equal(get_flat_params(model), get_flat_params(again))


def test_errors():
    with pytest.raises(ConfigurationError, match="unknown model 'vit'"):
        build_model("vit", input_shape=(64,), num_classes=10)
    with pytest.raises(ConfigurationError, match="input_shape"):
        build_model("resnet", input_shape=(64,), num_classes=10)
    with pytest.raises(ConfigurationError, match="input_shape"):
        build_model("cnn", input_shape=(64,), num_classes=10)
    with pytest.raises(ConfigurationError, match="input_shape"):
        SmallCNN((1, 2, 2), 10)
    with pytest.raises(ConfigurationError, match="num_classes"):
        SmallCNN((1, 8, 8), 0)
    with pytest.raises(ConfigurationError, match="in_features"):
        LogisticRegression(0, 10)
    with pytest.raises(ConfigurationError, match="hidden"):
        MLP(4, 2, hidden=(0,))
    with pytest.raises(InputError, match="650"):
        set_flat_params(LogisticRegression(64, 10), torch.zeros(10))
    with pytest.raises(InputError, match="1-D"):
        set_flat_params(LogisticRegression(64, 10), torch.zeros(650, 1))
    assert set(MODELS) == {"logreg", "mlp", "cnn", "resnet"}


def test_small_resnet_trains_a_step_on_cifar_shaped_input():
    model = build_model("resnet", input_shape=(3, 32, 32), num_classes=100, seed=0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 5, 99, 3])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model(x).shape == (4, 100) and all(p.grad is not None for p in model.parameters())
