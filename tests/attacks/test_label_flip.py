import numpy as np
import pytest
import torch

from byzdask.attacks import LabelFlipAttack
from byzdask.errors import ConfigurationError, InputError


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _grad_by_hand(model, x, targets, loss=torch.nn.functional.cross_entropy):
    model.zero_grad(set_to_none=True)
    loss(model(x), targets).backward()
    out = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone()
    model.zero_grad(set_to_none=True)
    return out


def test_gradient_on_mirrored_labels():
    model, x, y = _model(), torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 2, 0])
    out = LabelFlipAttack(num_classes="auto").apply(model=model, x=x, y=y)  # K = 3 read from the logits
    expected = _grad_by_hand(model, x, 2 - y)
    assert out.shape == (sum(p.numel() for p in model.parameters()),) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(LabelFlipAttack(num_classes=3, scale=-2.0).apply(model=model, x=x, y=y), -2 * expected)
    torch.testing.assert_close(LabelFlipAttack(num_classes=3).apply(model=model, x=x, y=y), expected)


def test_mapping_and_custom_loss():
    model, x, y = _model(), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    out = LabelFlipAttack(mapping={0: 1, 1: 0}).apply(model=model, x=x, y=y)
    torch.testing.assert_close(out, _grad_by_hand(model, x, torch.tensor([1, 0, 2, 1, 0, 2])))

    def loss(logits, t):
        return torch.nn.functional.cross_entropy(logits, t, reduction="sum")

    out = LabelFlipAttack(num_classes="auto", loss_fn=loss).apply(model=model, x=x, y=y)
    torch.testing.assert_close(out, _grad_by_hand(model, x, 2 - y, loss))


def test_model_left_as_it_was():
    model, x, y = _model(), torch.randn(4, 4), torch.tensor([0, 1, 2, 1])
    model.eval()
    attack = LabelFlipAttack(num_classes="auto")
    assert attack.uses_model_batch and attack.input_keys == ("model", "x", "y")
    attack.compute({"model": model, "x": x, "y": y})
    assert all(p.grad is None for p in model.parameters()) and not model.training
    model[0].weight.grad = torch.ones_like(model[0].weight)
    attack.apply(model=model, x=x, y=y)
    torch.testing.assert_close(model[0].weight.grad, torch.ones_like(model[0].weight))
    with torch.no_grad():  # works inside no_grad too
        assert torch.isfinite(attack.apply(model=model, x=x, y=y)).all()


def test_frozen_and_unused_parameters():
    model = _model()
    model[0].bias.requires_grad_(False)
    extra = torch.nn.Parameter(torch.zeros(2))
    model.register_parameter("unused", extra)
    out = LabelFlipAttack(num_classes="auto").apply(model=model, x=torch.randn(3, 4), y=torch.tensor([0, 1, 2]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert out.shape == (trainable,)
    assert next(iter(model.parameters())) is extra and torch.all(out[:2] == 0)  # own parameters come first


def test_errors():
    model, x = _model(), torch.randn(2, 4)
    with pytest.raises(InputError, match=r"labels must lie in \[0, 3\)"):
        LabelFlipAttack(num_classes="auto").apply(model=model, x=x, y=torch.tensor([0, 3]))
    with pytest.raises(InputError, match="integer class labels"):
        LabelFlipAttack(num_classes="auto").apply(model=model, x=x, y=torch.tensor([0.0, 1.0]))
    with pytest.raises(InputError, match="torch.nn.Module"):
        LabelFlipAttack(num_classes="auto").apply(model=None, x=x, y=torch.tensor([0, 1]))
    with pytest.raises(InputError, match="torch tensors"):
        LabelFlipAttack(num_classes="auto").apply(model=model, x=np.zeros((2, 4)), y=torch.tensor([0, 1]))
    for kwargs, msg in [({"num_classes": 0}, "num_classes"), ({"mapping": {0: -1}}, "mapping"),
                        ({"mapping": [1, 2]}, "mapping"), ({"loss_fn": 3}, "loss_fn"),
                        ({"scale": "x"}, "scale")]:
        with pytest.raises(ConfigurationError, match=msg):
            LabelFlipAttack(**kwargs)
