"""Do the attacks that adapt to the defence bite harder than the fixed ones? (issue 15, item 5, PS part)

Parameter server on digits, 10 honest + 3 Byzantine nodes, logistic regression, in-process
(``--cluster none``), IID and Dirichlet(0.3) shards. For each defence (CWTM, GM, Krum, NNM+CWTM)
and each attack, the final test accuracy averaged over the seeds; then the worst case (lowest
mean accuracy) over the 7 fixed attacks and over the 5 adaptive ones.

    PYTHONPATH=. python benchmarks/attacks_bite.py            # 30 rounds, seeds 0 1 2 (~5 min, 1 core)
    PYTHONPATH=. python benchmarks/attacks_bite.py --rounds 10 --seeds 0
"""

from __future__ import annotations

import _common

_common.limit_threads(1)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from byzdask.train import TrainConfig, run_training  # noqa: E402

FIXED = ("empire", "signflip", "labelflip", "little", "gaussian", "inf", "mimic")
ADAPTIVE = ("empire-opt", "little-opt", "minmax", "minsum", "fang")
DEFENCES = {"CWTM": ("cwtm", ()), "GM": ("gm", ()), "Krum": ("krum", ()), "NNM+CWTM": ("cwtm", ("nnm",))}
PARTITIONS = {"IID": ("iid", 0.5), "Dir(0.3)": ("dirichlet", 0.3)}


def accuracy(defence: str, attack: str, partition: str, seed: int, rounds: int) -> float:
    agg, pre = DEFENCES[defence]
    kind, alpha = PARTITIONS[partition]
    attack_kwargs = {"target": "krum"} if attack == "fang" and agg == "krum" else {}
    config = TrainConfig(aggregator=agg, pre_aggregators=pre, attack=attack, partition=kind, alpha=alpha,
                         honest=10, byzantine=3, rounds=rounds, eval_every=rounds, seed=seed, cluster="none",
                         attack_kwargs=attack_kwargs)
    return float(run_training(config, progress=False)["final_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    start = time.perf_counter()
    attacks = ("none", *FIXED, *ADAPTIVE)
    acc: dict[tuple[str, str, str], float] = {}
    for partition in PARTITIONS:
        for defence in DEFENCES:
            for attack in attacks:
                acc[partition, defence, attack] = float(np.mean(
                    [accuracy(defence, attack, partition, s, args.rounds) for s in args.seeds]))
    print(f"# digits, PS, 10 honest + 3 Byzantine, logreg, {args.rounds} rounds, mean over seeds {args.seeds}; "
          f"Fang targets Krum against Krum, trimmed mean otherwise; {time.perf_counter() - start:.0f} s")
    for partition in PARTITIONS:
        print(f"\n## {partition}: final accuracy per attack")
        print(f"{'attack':<12}" + "".join(f"{d:>10}" for d in DEFENCES))
        for attack in attacks:
            print(f"{attack:<12}" + "".join(f"{acc[partition, d, attack]:>10.3f}" for d in DEFENCES))
    print("\n## worst case (lowest mean accuracy) over the fixed and over the adaptive attacks")
    print(f"| {'defence':<9} | {'partition':<9} | {'no attack':>9} | {'worst fixed':<22} | {'worst adaptive':<22} |")
    print(f"|{'-' * 11}|{'-' * 11}|{'-' * 11}|{'-' * 24}|{'-' * 24}|")
    for partition in PARTITIONS:
        for defence in DEFENCES:
            fixed = min(FIXED, key=lambda a: acc[partition, defence, a])
            adaptive = min(ADAPTIVE, key=lambda a: acc[partition, defence, a])
            cell_f = f"{acc[partition, defence, fixed]:.3f} ({fixed})"
            cell_a = f"{acc[partition, defence, adaptive]:.3f} ({adaptive})"
            print(f"| {defence:<9} | {partition:<9} | {acc[partition, defence, 'none']:>9.3f} | {cell_f:<22} | "
                  f"{cell_a:<22} |")


if __name__ == "__main__":
    main()
