import math

import pytest
import torch
from mtlkit_plugins.aggregators.excess_mtl import ExcessMTL

from mtlkit.errors import ConfigError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff

test_excess_mtl_properties = aggregator_suite(ExcessMTL, max_examples=8, max_tasks=20,
                                              max_dim=500)


def excess_reference(Js, eta, warmup):
    """Eq. 6-9 and App. C.1 written out per task and coordinate with Python floats."""
    K, n = Js[0].shape
    S = [[0.0] * n for _ in range(K)]
    w = [1.0 / K] * K
    warm = [0.0] * K
    base = None
    out = []
    for t, J in enumerate(Js):
        rows = J.double().tolist()
        e = []
        for k in range(K):
            for j in range(n):
                S[k][j] += rows[k][j] ** 2
            e.append(math.fsum(rows[k][j] ** 2 / math.sqrt(S[k][j] + 1e-7) for j in range(n)))
        if t < warmup:
            warm = [a + b for a, b in zip(warm, e)]
        else:
            if base is None:
                base = [a / warmup for a in warm]
            w = [w[k] * math.exp(eta * e[k] / (base[k] + 1e-7)) for k in range(K)]
            total = math.fsum(w)
            w = [x / total for x in w]
        out.append(torch.tensor([math.fsum(w[k] * rows[k][j] for k in range(K))
                                 for j in range(n)], dtype=torch.float64))
    return out


@pytest.mark.parametrize(("eta", "warmup"), [(1.0, 1), (0.3, 3), (2.0, 2)])
def test_excess_mtl_follows_the_papers_updates(eta, warmup):
    Js = [make_J(3, 7, seed=s) * (1.0 + s) for s in range(6)]
    a = agg("excess_mtl", robust_step_size=eta, n_warmup_steps=warmup)
    for J, ref in zip(Js, excess_reference(Js, eta, warmup)):
        assert float((a(J) - ref).norm()) <= roundoff(J)


def test_the_first_step_is_the_mean_and_reset_restarts():
    Js = [make_J(4, 5, seed=s) for s in range(3)]
    a = agg("excess_mtl")
    first = [a(J) for J in Js]
    assert float((first[0] - Js[0].mean(0)).norm()) <= roundoff(Js[0])
    a.reset()
    assert all(torch.equal(a(J), d) for J, d in zip(Js, first))


def test_a_task_far_from_its_optimum_gains_weight():
    # task 0's gradient keeps its size (large excess risk), task 1's shrinks as if converging
    a = agg("excess_mtl")
    e0, e1 = torch.eye(2, dtype=torch.float64)
    for t in range(6):
        a(torch.stack([e0, 0.5 ** t * e1]))
    assert float(a._weights[0]) > 0.9


def test_huge_ratios_do_not_overflow_into_nan():
    a = agg("excess_mtl", robust_step_size=1e3)
    a(torch.tensor([[1e-12, 0.0], [0.0, 1e-12]], dtype=torch.float64))  # tiny baseline
    d = a(torch.tensor([[1e6, 0.0], [0.0, 1.0]], dtype=torch.float64))
    assert bool(torch.isfinite(d).all()) and float(d[0]) == pytest.approx(1e6)


def test_state_dict_round_trip_continues_identically():
    Js = [make_J(3, 6, seed=s) for s in range(5)]
    a = agg("excess_mtl")
    for J in Js[:3]:
        a(J)
    b = agg("excess_mtl")
    b.load_state_dict(a.state_dict())
    for J in Js[3:]:
        assert torch.equal(a(J), b(J))


@pytest.mark.parametrize("params", [{"robust_step_size": 0.0}, {"robust_step_size": -1.0},
                                    {"n_warmup_steps": 0}, {"n_warmup_steps": 1.5}])
def test_excess_mtl_rejects_bad_parameters(params):
    with pytest.raises(ConfigError):
        agg("excess_mtl", **params)
