import numpy as np
import pytest
import torch

from byzdask.aggregators import Average, CoordinateWiseMedian, CoordinateWiseTrimmedMean, GeometricMedian, Krum
from byzdask.attacks.optimal import OptimalEmpireAttack, OptimalLittleAttack, line_search
from byzdask.errors import ConfigurationError, InputError
from byzdask.pre_aggregators import NearestNeighborMixing


def reference_search(g, vector, agg, pre, f, evals=20, start=0.0, delta=10.0, ratio=0.8):
    """Plain-loop restatement of ByzFL's search: expand while strictly better, then contract."""
    mean = np.mean(g, axis=0)

    def damage(t):
        v = np.vstack([g] + [vector(g, t)] * f)
        for p in pre:
            v = np.asarray(p.pre_aggregate(v))
        return np.linalg.norm(np.asarray(agg.aggregate(v)) - mean)

    xs = [start]
    ys = [damage(start)]
    best, step, phase = 0, delta, "expand"
    for _ in range(evals - 1):
        x = xs[best] + step
        xs.append(x)
        ys.append(damage(x))
        better = ys[-1] > ys[best]
        if better:
            best = len(xs) - 1
        if phase == "expand":
            if better:
                step = step * 2
            else:
                step, phase = step * ratio, "contract"
        else:
            step = step * ratio
    return vector(g, xs[best])


def ipm(g, t):
    return -t * np.mean(g, axis=0)


def alie(g, t):
    return np.mean(g, axis=0) + t * np.std(g, axis=0, ddof=1)


DEFENCES = [
    (lambda f: CoordinateWiseTrimmedMean(f=f), lambda f: ()),
    (lambda f: CoordinateWiseMedian(), lambda f: ()),
    (lambda f: Krum(f=f), lambda f: ()),
    (lambda f: GeometricMedian(), lambda f: ()),
    (lambda f: CoordinateWiseTrimmedMean(f=f), lambda f: (NearestNeighborMixing(f=f),)),
]


@pytest.mark.parametrize("cls, vector", [(OptimalEmpireAttack, ipm), (OptimalLittleAttack, alie)])
@pytest.mark.parametrize("defence", range(len(DEFENCES)))
def test_matches_reference(cls, vector, defence):
    rng = np.random.default_rng(defence)
    for _ in range(3):
        h, f, d = int(rng.integers(5, 9)), int(rng.integers(1, 3)), int(rng.integers(1, 7))
        g = rng.normal(1.0, 1.0, size=(h, d))
        agg, pre = DEFENCES[defence][0](f), DEFENCES[defence][1](f)
        out = cls(agg, pre, f=f).apply(honest_grads=list(g))
        np.testing.assert_allclose(out, reference_search(g, vector, agg, pre, f), rtol=1e-12, atol=1e-12)


def test_search_maximises_a_known_objective():
    # 0, 10, 30 (better), 70 (worse): then only steps forward from 30, all worse
    assert line_search(lambda t: -abs(t - 25.0), evals=60) == 30.0
    assert line_search(lambda t: 0.0, evals=5) == 0.0  # never strictly better: stays at start
    assert line_search(lambda t: t, evals=4, delta=1.0) == 7.0  # 0, 1, 3, 7: doubling steps


def test_average_is_pushed_far_and_torch_kept():
    g = [torch.randn(2, 3) + 1 for _ in range(6)]
    out = OptimalEmpireAttack(Average(), f=2).apply(honest_grads=g)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3) and out.dtype == torch.float32
    # against the mean the damage grows with tau: the search expands every time
    mean = torch.stack(g).mean(0)
    torch.testing.assert_close(out, -mean * 10.0 * (2 ** 19 - 1), rtol=1e-5, atol=1e-3)


def test_flags_and_errors():
    attack = OptimalLittleAttack(Average())
    assert attack.uses_defence and attack.uses_honest_grads and attack.input_keys == ("honest_grads",)
    with pytest.raises(ConfigurationError, match="aggregator must be"):
        OptimalEmpireAttack("cwtm")
    with pytest.raises(ConfigurationError, match="pre_aggregators must be"):
        OptimalEmpireAttack(Average(), pre_aggregators=["nnm"])
    with pytest.raises(ConfigurationError, match="evals must be an integer >= 1, got 0"):
        OptimalEmpireAttack(Average(), evals=0)
    with pytest.raises(ConfigurationError, match="ratio must lie strictly between 0.5 and 1, got 1.0"):
        OptimalEmpireAttack(Average(), ratio=1.0)
    with pytest.raises(ConfigurationError, match="delta must be a non-zero number, got 0"):
        OptimalEmpireAttack(Average(), delta=0)
    with pytest.raises(InputError, match="at least 2 honest vectors, got 1"):
        OptimalLittleAttack(Average()).apply(honest_grads=[np.ones(3)])




@pytest.mark.parametrize("kind", ["ipm", "alie"])
def test_equals_byzfl(kind):
    byzfl = pytest.importorskip("byzfl")
    ours = {"ipm": OptimalEmpireAttack, "alie": OptimalLittleAttack}[kind]
    theirs = {"ipm": byzfl.Optimal_InnerProductManipulation, "alie": byzfl.Optimal_ALittleIsEnough}[kind]
    rng = np.random.default_rng(1)
    pairs = [
        (lambda f: CoordinateWiseTrimmedMean(f=f), lambda f: byzfl.TrMean(f=f), (), ()),
        (lambda f: CoordinateWiseMedian(), lambda f: byzfl.Median(), (), ()),
        (lambda f: Krum(f=f), lambda f: byzfl.Krum(f=f), (), ()),
        (lambda f: CoordinateWiseTrimmedMean(f=f), lambda f: byzfl.TrMean(f=f), "nnm", "nnm"),
    ]
    worst = 0.0
    for ours_agg, their_agg, ours_pre, their_pre in pairs:
        for _ in range(4):
            h, f, d = int(rng.integers(5, 10)), int(rng.integers(1, 3)), int(rng.integers(2, 20))
            g = rng.normal(0.5, 1.0, size=(h, d))
            pre_a = (NearestNeighborMixing(f=f),) if ours_pre else ()
            pre_b = [byzfl.NNM(f=f)] if their_pre else []
            a = ours(ours_agg(f), pre_a, f=f).apply(honest_grads=g)
            b = theirs(their_agg(f), pre_agg_list=pre_b, f=f)(g)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
            worst = max(worst, float(np.max(np.abs(a - b))))
            # our defender inside ByzFL's own search gives the same vector bit for bit
            c = theirs(ours_agg(f), pre_agg_list=list(pre_a), f=f)(g)
            np.testing.assert_array_equal(a, c)
    print(f"{kind}: largest |byzdask - byzfl| over 16 random cases: {worst:.3g}")


def test_built_from_short_names_with_the_runs_defence():
    from byzdask.experiments.config import SweepConfig
    from byzdask.train import TrainConfig, build_job

    job = build_job(TrainConfig(honest=5, byzantine=1, attack="little-opt", aggregator="krum",
                                pre_aggregators=("nnm",), attack_kwargs={"evals": 5}))
    attack = job["byzantine"][0].attack
    assert type(attack.aggregator).__name__ == "Krum" and attack.aggregator.f == 1 and attack.evals == 5
    assert [type(p).__name__ for p in attack.pre_aggregators] == ["NearestNeighborMixing"]
    assert attack.aggregator is not job["aggregator"]  # a copy: the attack's search leaves the rule alone
    SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": ["empire-opt", "minmax", "fang"],
                                    "f": [1]}})
    with pytest.raises(ConfigurationError, match="ratio"):
        SweepConfig.from_dict({"grid": {"aggregators": ["cwtm"], "attacks": [{"empire-opt": {"ratio": 2.0}}],
                                        "f": [1]}})
