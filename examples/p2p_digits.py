"""Peer-to-peer training on the digits data, every node a Dask actor.

10 honest nodes and 3 Byzantine nodes sit on a ring where each node exchanges with its 3
nearest nodes on each side. Each round every honest node takes a local SGD step (worker
momentum 0.9), sends its model to its neighbours, and aggregates what it received with a
coordinate-wise trimmed mean; the Byzantine nodes send Gaussian noise. The script prints the
mean and worst honest accuracy and the consensus distance between honest models.

Run it as is (a local cluster of two worker processes is started and closed)::

    python examples/p2p_digits.py
    python examples/p2p_digits.py --mode async --cluster thread --rounds 40
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from byzdask.aggregators import CoordinateWiseTrimmedMean
from byzdask.attacks.gaussian import GaussianAttack
from byzdask.data import load_digits, partition_dataset
from byzdask.engine.graph.pool import ActorPool, ActorPoolConfig
from byzdask.engine.node import ByzantineNode
from byzdask.engine.node.training import make_honest_nodes
from byzdask.engine.peer_to_peer import PeerToPeer, Topology
from byzdask.models import build_model

logger = logging.getLogger("p2p_digits")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--honest", type=int, default=10)
    parser.add_argument("--byzantine", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=3, help="ring: neighbours on each side")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--mode", choices=["sync", "async"], default="sync")
    parser.add_argument("--cluster", choices=["process", "thread"], default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser.parse_args(argv)


async def train(args: argparse.Namespace) -> list[dict]:
    split = load_digits(seed=args.seed)
    n = args.honest + args.byzantine
    # spread the Byzantine nodes around the ring
    byzantine_ids = sorted({(k * n) // max(args.byzantine, 1) + n // (2 * max(args.byzantine, 1))
                            for k in range(args.byzantine)})
    topology = Topology.ring(n, k=args.neighbours, byzantine=byzantine_ids)
    # every honest node trims as many values on each side as it may have Byzantine neighbours
    f = max(len(topology.byzantine_in_neighbours(i)) for i in topology.honest_ids)

    model = build_model("logreg", input_shape=(64,), num_classes=10, seed=args.seed)
    shards = partition_dataset(split.train, args.honest, seed=args.seed)
    honest = make_honest_nodes(shards, model, batch_size=32, momentum=0.9, seed=args.seed)
    byzantine = [ByzantineNode(GaussianAttack(sigma=50.0, seed=args.seed + k), node_id=i)
                 for k, i in enumerate(byzantine_ids)]

    async with ActorPool(ActorPoolConfig(args.cluster, count=args.workers)) as pool:
        logger.info("dashboard: %s", pool.dashboard_link)
        p2p = PeerToPeer(honest, byzantine, topology, aggregator=CoordinateWiseTrimmedMean(f=f), lr=0.5,
                         actor_pool=pool, mode=args.mode, test_data=split.test)
        async with p2p:
            return await p2p.run(args.rounds, eval_every=args.eval_every, progress=args.progress,
                                 callback=lambda r: logger.info(
                                     "round %3d  accuracy mean %.3f worst %.3f  consensus distance %.2e",
                                     r["round"], r["accuracy"], r["worst_accuracy"], r["consensus_distance"]))


def main(argv: list[str] | None = None) -> list[dict]:
    return asyncio.run(train(parse(argv)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    history = main()
    print(f"final accuracy: mean {history[-1]['accuracy']:.3f}, worst {history[-1]['worst_accuracy']:.3f}")
