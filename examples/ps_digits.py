"""Parameter-server training on the digits data, on a local Dask cluster of worker processes.

10 honest nodes and 3 Byzantine nodes running the "little is enough" attack; the server
aggregates with nearest-neighbour mixing followed by the coordinate-wise trimmed mean.

Run: python examples/ps_digits.py [rounds]
"""

import sys

from byzdask.aggregators import CoordinateWiseTrimmedMean
from byzdask.attacks.little import LittleAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.node import ByzantineNode
from byzdask.engine.node.training import make_honest_nodes
from byzdask.engine.parameter_server import ParameterServer
from byzdask.models import build_model
from byzdask.pre_aggregators.nnm import NearestNeighborMixing


def main(rounds: int = 30) -> float:
    honest_count, f = 10, 3
    split = load_digits(seed=0)
    model = build_model("logreg", input_shape=split.train.input_shape, num_classes=10, seed=0)
    shards = partition_dataset(split.train, honest_count, kind="iid", seed=0)
    honest = make_honest_nodes(shards, model, batch_size=32, momentum=0.9, seed=0)
    byzantine = [ByzantineNode(LittleAttack(f=f, N=honest_count + f), node_id=honest_count + j) for j in range(f)]

    pool = ActorPool(ActorPoolConfig("process", count=2))
    with pool.sync():
        print("dashboard:", pool.dashboard_link)
        ps = ParameterServer(honest, byzantine, CoordinateWiseTrimmedMean(f=f), [NearestNeighborMixing(f=f)],
                             lr=0.5, actor_pool=pool, test_data=split.test)
        history = ps.run_sync(rounds, eval_every=5)
    for record in history:
        print(f"round {record['round']:3d}  accuracy {record['accuracy']:.3f}  loss {record['loss']:.3f}")
    return history[-1]["accuracy"]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
