"""Plug in your own model, data and attack: subclass HonestNode / ByzantineNode / Attack.

The data are two Gaussian blobs made here (no dataset package), the model is a small torch
network written here, the honest nodes add an L2 penalty to their loss, and the Byzantine
nodes send the honest mean pushed the wrong way, scaled. The parameter server runs on
in-process Dask workers (``"thread"``); use ``"process"`` for worker processes.

Run: python examples/custom_node.py [rounds]
"""

import sys

import torch
from torch import nn
from torch.nn import functional

from byzdask.aggregators import CoordinateWiseTrimmedMean
from byzdask.attacks.base import Attack
from byzdask.data import Dataset
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.node import ByzantineNode, HonestNode
from byzdask.engine.parameter_server import ParameterServer


def blobs(n: int, seed: int) -> Dataset:
    """Two Gaussian blobs in 2-D, labels 0 and 1."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 2, generator=gen) + (2.0 * y - 1.0).unsqueeze(1) * 1.5
    return Dataset(x.float(), y.long(), num_classes=2, input_shape=(2,), name="blobs")


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(2, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


class RegularisedNode(HonestNode):
    """An honest node whose gradient includes an L2 penalty on its parameters."""

    penalty = 1e-3

    def compute_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = self._require_model()
        model.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(x), y)
        loss = loss + self.penalty * sum((p ** 2).sum() for p in model.parameters())
        loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


class PushBack(Attack):
    """Send ``-scale`` times the mean of the honest vectors."""

    uses_honest_grads = True

    def __init__(self, scale: float = 4.0) -> None:
        self.scale = scale

    def apply(self, *, honest_grads=None, **_):
        return -self.scale * torch.stack(list(honest_grads)).mean(dim=0)


class LoudByzantine(ByzantineNode):
    """A Byzantine node that doubles whatever its attack makes."""

    def attack_vector(self, **kwargs):
        return 2.0 * super().attack_vector(**kwargs)


def main(rounds: int = 40) -> float:
    torch.manual_seed(0)
    model = TinyNet()
    honest = [RegularisedNode(TinyNet(), blobs(200, seed=i), batch_size=32, momentum=0.5, seed=i, node_id=i)
              for i in range(6)]
    for node in honest:
        node.set_params(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    byzantine = [LoudByzantine(PushBack(), node_id=6 + j) for j in range(2)]
    pool = ActorPool(ActorPoolConfig("thread", count=2))
    with pool.sync():
        ps = ParameterServer(honest, byzantine, CoordinateWiseTrimmedMean(f=2), lr=0.5, actor_pool=pool,
                             test_data=blobs(500, seed=100))
        history = ps.run_sync(rounds, eval_every=10, progress=False)
    for record in history:
        print(f"round {record['round']:3d}  accuracy {record['accuracy']:.3f}")
    return history[-1]["accuracy"]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
