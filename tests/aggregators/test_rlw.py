import torch

from tests.aggregators.helpers import agg, make_J


def test_rlw_is_softmax_of_normal_draws_from_the_context_generator():
    J = make_J(4, 6)
    d = agg("rlw")(J, generator=torch.Generator().manual_seed(5))
    z = torch.randn(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.allclose(d, torch.softmax(z, 0) @ J)


def test_rlw_own_generator_is_seeded_and_advances():
    J = make_J(3, 5)
    a, b = agg("rlw", seed=3), agg("rlw", seed=3)
    first = a(J)
    assert torch.equal(first, b(J))
    assert not torch.allclose(first, a(J))  # new weights each step
    a.reset()
    assert torch.equal(a(J), first)


def test_rlw_loss_weights_sum_to_one():
    w = agg("rlw").loss_weights(torch.tensor([1.0, 2.0, 3.0]), {})
    assert w.shape == (3,) and abs(float(w.sum()) - 1) < 1e-12 and bool((w > 0).all())
