"""Milliseconds per training round: byzdask (PS in-process, PS on a local cluster, P2P in-process), ByzFL's own loop, and the batched floor.

The job (``--attack``, default sign flip): 10 honest + 3 Byzantine nodes, CWTM f=3, logistic
regression on digits, batch 32, momentum 0.9, lr 0.5, one torch thread.

* ``rounds``: ms per round in-process and on a local cluster of 2 worker processes with one
  thread each (what ``byzdask train`` starts), per mode; the difference is what Dask costs
  per round. Rounds are timed in blocks after warm-up rounds (min and median over blocks).
* ``byzfl``: the ``byzdask train --cluster none`` path (``make_trainer`` + ``run_sync``),
  ByzFL 0.0.x's own loop (``byzfl.fed_framework`` ``Client`` / ``Server`` /
  ``ByzantineClient``, with a digits logistic-regression module registered in
  ``byzfl.fed_framework.models``; same shards, same initial weights) and the batched floor (all
  gradients as one batched product in plain torch, the attack, the rule, the step), run in
  turns (alternating), min and median over turns, and the ratios. Skipped without ByzFL.
* ``sweep``: wall time of 100 runs of a sweep's task body (:func:`byzdask.experiments.sweep.run_point`,
  small rounds), in this process. Run it once with ``PYTHONPATH`` at the old tree for "before".

    python benchmarks/training.py                       # all sections
    python benchmarks/training.py --sections byzfl --turns 5 --byzfl-rounds 300
    python benchmarks/training.py --sections sweep --sweep-runs 100 --sweep-rounds 20

The machine may be shared: read the minimum, and compare numbers of one run only.
"""

from __future__ import annotations

import _common

_common.limit_threads(1)

import argparse
import json
import os
import statistics
import time

import torch

from byzdask.engine.graph.scheduler import run_coroutine_sync
from byzdask.train import TrainConfig, build_job, make_pool, make_trainer


def time_rounds(trainer, pool, blocks: int, rounds: int, warmup: int = 3) -> list[float]:
    loop = None if pool is None else pool.client.loop.asyncio_loop

    async def block(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await trainer.round()
        return (time.perf_counter() - start) / count

    run_coroutine_sync(lambda: block(warmup), loop=loop)
    per_round = [run_coroutine_sync(lambda: block(rounds), loop=loop) for _ in range(blocks)]
    close = getattr(trainer, "close", None)
    if close is not None:
        run_coroutine_sync(close, loop=loop)
    return per_round


JOB = dict(honest=10, byzantine=3, aggregator="cwtm", model="logreg", batch_size=32, momentum=0.9, lr=0.5)


def bench(mode: str, cluster: str, blocks: int, rounds: int, attack: str = "signflip") -> dict:
    config = TrainConfig(mode=mode, cluster=cluster, workers=2, attack=attack, **JOB)
    pool = make_pool(cluster, 2)
    try:
        if pool is not None:
            pool.start_sync()
        trainer = make_trainer(config, build_job(config), pool)
        times = time_rounds(trainer, pool, blocks, rounds)
    finally:
        if pool is not None:
            pool.shutdown_sync()
    return {"mode": mode, "cluster": cluster, "min_ms": 1e3 * min(times), "median_ms": 1e3 * statistics.median(times)}


# -- ByzFL and the floor --------------------------------------------------------------------------
def _byzfl_setup(job: dict, seed: int = 0):
    import byzfl.fed_framework.models as byzfl_models
    from byzfl.fed_framework import ByzantineClient, Client, Server
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    class digits_logreg(nn.Module):  # noqa: N801 (ByzFL looks models up by name)
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            return self.linear(x.flatten(1))

    byzfl_models.digits_logreg = digits_logreg
    state = {"linear.weight": job["model"].linear.weight.detach().clone(),
             "linear.bias": job["model"].linear.bias.detach().clone()}
    common = {"device": "cpu", "model_name": "digits_logreg", "optimizer_name": "SGD",
              "learning_rate": JOB["lr"], "weight_decay": 0.0, "milestones": [], "learning_rate_decay": 1.0}
    generator = torch.Generator().manual_seed(seed)
    clients = []
    for node in job["honest"]:
        loader = DataLoader(TensorDataset(node.data.x, node.data.y), batch_size=JOB["batch_size"], shuffle=True,
                            generator=generator)
        client = Client({**common, "loss_name": "CrossEntropyLoss", "LabelFlipping": False,
                         "training_dataloader": loader, "momentum": JOB["momentum"], "nb_labels": 10,
                         "store_per_client_metrics": False})
        client.set_model_state(state)
        clients.append(client)
    test = job["split"].test
    server = Server({**common, "test_loader": DataLoader(TensorDataset(test.x, test.y), batch_size=512),
                     "aggregator_info": {"name": "TrMean", "parameters": {"f": JOB["byzantine"]}},
                     "pre_agg_list": []})
    server.model.load_state_dict(state)
    attacker = ByzantineClient({"f": JOB["byzantine"], "name": "SignFlipping", "parameters": {}})
    return clients, server, attacker


def byzfl_seconds(rounds: int) -> float:
    job = build_job(TrainConfig(cluster="none", attack="signflip", **JOB))
    clients, server, attacker = _byzfl_setup(job)
    start = time.perf_counter()
    for _ in range(rounds):
        for client in clients:
            client.compute_gradients()
        honest = [client.get_flat_gradients_with_momentum() for client in clients]
        server.update_model_with_gradients(honest + attacker.apply_attack(honest))
        state = server.get_dict_parameters()
        for client in clients:
            client.set_model_state(state)
    return (time.perf_counter() - start) / rounds


def byzdask_seconds(rounds: int) -> float:
    """The ``byzdask train --cluster none`` path: the trainer ``make_trainer`` builds, ``run_sync``."""
    config = TrainConfig(cluster="none", attack="signflip", rounds=rounds, eval_every=rounds, **JOB)
    trainer = make_trainer(config, build_job(config), None)
    start = time.perf_counter()
    trainer.run_sync(rounds, eval_every=rounds, progress=False)
    return (time.perf_counter() - start) / rounds


def floor_seconds(rounds: int) -> float:
    """All honest gradients as one batched product (closed-form logreg gradient), momentum,
    sign flip (minus the honest mean), coordinate-wise trimmed mean (a sort), the step."""
    from byzdask.engine.node.batched import batch_index_block

    job = build_job(TrainConfig(cluster="none", attack="signflip", **JOB))
    nodes = job["honest"]
    x = torch.cat([n.data.x for n in nodes])
    y = torch.cat([n.data.y for n in nodes])
    offsets = torch.tensor([0] + [len(n.data) for n in nodes][:-1]).cumsum(0)
    h, b, f, k = len(nodes), JOB["batch_size"], JOB["byzantine"], 10
    w = job["model"].linear.weight.detach().clone()
    bias = job["model"].linear.bias.detach().clone()
    m = torch.zeros(h, w.numel() + k)
    eye = torch.eye(k)
    start = time.perf_counter()
    local = batch_index_block([len(n.data) for n in nodes], b, [n.seed for n in nodes],
                              [list(range(rounds))] * h)  # one call: every node, every round
    rows = torch.from_numpy(local).transpose(0, 1) + offsets[None, :, None]
    for t in range(rounds):
        xb, yb = x[rows[t]], y[rows[t]]
        p = torch.softmax(xb @ w.T + bias, dim=-1) - eye[yb]
        g = torch.cat([torch.einsum("hbc,hbi->hci", p, xb).reshape(h, -1), p.sum(1)], dim=1) / b
        m = 0.9 * m + 0.1 * g
        vectors = torch.cat([m, (-m.mean(0)).expand(f, -1)])
        agg = vectors.sort(dim=0).values[f:h + f - f].mean(0)
        w = w - JOB["lr"] * agg[:-k].reshape(k, -1)
        bias = bias - JOB["lr"] * agg[-k:]
    return (time.perf_counter() - start) / rounds


def compare_byzfl(turns: int, rounds: int) -> None:
    try:
        import byzfl  # noqa: F401
    except ImportError:
        print("byzfl: not installed, skipped")
        return
    columns = {"byzdask train --cluster none": byzdask_seconds, "ByzFL loop": byzfl_seconds,
               "batched floor": floor_seconds}
    for fn in columns.values():  # warm-up
        fn(5)
    times = {name: [] for name in columns}
    for _ in range(turns):  # alternating turns
        for name, fn in columns.items():
            times[name].append(fn(rounds))
    print(f"\nbyzdask vs ByzFL: {rounds} rounds x {turns} alternating turns, sign flip, CWTM f=3, momentum 0.9; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'':30} {'min ms/round':>13} {'median':>8}")
    for name, values in times.items():
        print(f"{name:30} {1e3 * min(values):13.2f} {1e3 * statistics.median(values):8.2f}")
    ours, theirs, floor = (min(times[n]) for n in columns)
    print(f"speed-up over ByzFL (min): {theirs / ours:.1f}x; byzdask / floor (min): {ours / floor:.2f}x")


def sweep_seconds(runs: int, rounds: int) -> None:
    from byzdask.experiments.config import SweepConfig
    from byzdask.experiments.sweep import run_point

    cfg = SweepConfig.from_dict({
        "grid": {"aggregators": ["cwtm", "cwmed", "krum", "gm", "meamed"], "attacks": ["signflip", "little"],
                 "f": [3], "seeds": list(range(10))},
        "training": {"honest": 10, "rounds": rounds, "eval_every": rounds},
    })
    points = [p for p in cfg.points() if not p.skip_reason][:runs]
    start = time.perf_counter()
    failed = sum(run_point(p.settings)["status"] != "ok" for p in points)
    wall = time.perf_counter() - start
    print(f"\nsweep: {len(points)} runs x {rounds} rounds (run_point in this process): {wall:.1f} s wall, "
          f"{failed} failed; load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="rounds,byzfl,sweep")
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10, help="rounds per block")
    parser.add_argument("--modes", default="ps,p2p")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--byzfl-rounds", type=int, default=200)
    parser.add_argument("--sweep-runs", type=int, default=100)
    parser.add_argument("--sweep-rounds", type=int, default=20)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = args.sections.split(",")
    rows = []
    if "rounds" in sections:
        for mode in args.modes.split(","):
            local = bench(mode, "none", args.blocks, args.rounds)
            cluster = bench(mode, "local", args.blocks, args.rounds)
            overhead = cluster["min_ms"] - local["min_ms"]
            rows.append({"mode": mode, "in_process_ms": local["min_ms"], "in_process_median_ms": local["median_ms"],
                         "cluster_ms": cluster["min_ms"], "cluster_median_ms": cluster["median_ms"],
                         "overhead_ms": overhead})
        print(f"13 nodes (10 honest + 3 Byzantine), digits, logreg, sign flip, CWTM; local cluster: 2 worker "
              f"processes x 1 thread; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'mode':5} {'in-process ms/round':>20} {'cluster ms/round':>17} {'Dask overhead ms':>17}"
              f" {'(medians)':>20}")
        for r in rows:
            print(f"{r['mode']:5} {r['in_process_ms']:20.2f} {r['cluster_ms']:17.1f} {r['overhead_ms']:17.1f}"
                  f"   {r['in_process_median_ms']:7.2f} / {r['cluster_median_ms']:7.1f}")
    if "byzfl" in sections:
        compare_byzfl(args.turns, args.byzfl_rounds)
    if "sweep" in sections:
        sweep_seconds(args.sweep_runs, args.sweep_rounds)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
