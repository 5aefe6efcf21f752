import pytest
import torch
from mtlkit_plugins.aggregators.cr_mogm import cr_mogm

from mtlkit.errors import ConfigError, MtlkitError
from mtlkit.testing.pytest_plugin import aggregator_suite
from tests.aggregators.helpers import agg, make_J
from tests.aggregators.references import roundoff

test_cr_mogm_properties = aggregator_suite(cr_mogm, max_examples=6, max_tasks=12, max_dim=300)


def steps(K=4, n=9, T=5):
    return [make_J(K, n, seed=s) for s in range(T)]


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_cr_mogm_is_the_papers_average_of_the_inner_weights(beta):
    inner = agg("mgda")  # stateless: its weights at step t depend on J_t only
    a = agg("cr_mogm", inner="mgda", beta=beta)
    lam = torch.full((4,), 0.25, dtype=torch.float64)
    for J in steps():
        lam = beta * lam + (1 - beta) * inner.weights(J @ J.T, {})
        ref = sum(lam[k] * J[k] for k in range(4))
        assert float((a(J) - ref).norm()) <= roundoff(J)


def test_beta_one_freezes_uniform_weights_and_reset_restarts():
    Js = steps()
    frozen = agg("cr_mogm", inner="upgrad", beta=1.0)
    for J in Js:
        assert float((frozen(J) - J.mean(0)).norm()) <= roundoff(J)
    a = agg("cr_mogm", inner="upgrad", beta=0.7)
    first = [a(J) for J in Js]
    a.reset()
    assert all(torch.equal(a(J), d) for J, d in zip(Js, first))


def test_state_dict_resumes_the_average():
    Js = steps(T=4)
    a = agg("cr_mogm", inner="upgrad", beta=0.8)
    for J in Js[:2]:
        a(J)
    b = agg("cr_mogm", inner="upgrad", beta=0.8)
    b.load_state_dict(a.state_dict())
    for J in Js[2:]:
        assert torch.equal(a(J), b(J))


def test_a_loss_weighting_stays_loss_level():
    a = agg("cr_mogm", inner="dwa", beta=0.5)
    assert a.requires == "losses"
    inner = agg("dwa")
    lam = torch.full((2,), 0.5, dtype=torch.float64)
    for epoch, L in enumerate([[4.0, 4.0], [1.0, 3.0], [1.0, 3.0], [2.0, 1.0]]):
        ctx = {"epoch": epoch}
        lam = 0.5 * lam + 0.5 * inner.loss_weights(torch.tensor(L), ctx)
        assert torch.allclose(a.loss_weights(torch.tensor(L), ctx), lam, rtol=1e-15, atol=0)
    assert agg("cr_mogm", inner="upgrad").requires == "gramian"


@pytest.mark.parametrize(("params", "message"), [
    ({"inner": "no_such_method"}, "unknown inner method 'no_such_method'; weightings: .*upgrad"),
    ({"inner": "trimmed_mean"}, "'trimmed_mean' is not a weighting"),
    ({"inner": "famo"}, "needs the losses after the step"),
    ({"inner": 3}, "must be the name"),
    ({"inner_params": [1]}, "must be a dict"),
    ({"beta": 1.5}, "beta"),
    ({"beta": -0.1}, "beta"),
])
def test_cr_mogm_bad_input_is_a_config_error(params, message):
    with pytest.raises(ConfigError, match=message):
        agg("cr_mogm", **params)


def test_inner_parameters_are_checked_by_the_inner_method():
    with pytest.raises(MtlkitError, match="no parameter 'x'"):
        agg("cr_mogm", inner="mgda", inner_params={"x": 1})
    assert agg("cr_mogm", inner="mgda", inner_params={"solver": "frank_wolfe"}) is not None
