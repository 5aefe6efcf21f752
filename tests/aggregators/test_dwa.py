import torch

from tests.aggregators.helpers import agg


def test_dwa_uses_epoch_average_loss_ratios():
    a = agg("dwa", temperature=2.0)
    epochs = {0: [[1.0, 2.0], [3.0, 2.0]], 1: [[1.0, 1.0], [1.0, 1.0]], 2: [[5.0, 5.0]]}
    weights = []
    for epoch, steps in epochs.items():
        for L in steps:
            weights.append(a.loss_weights(torch.tensor(L), {"epoch": epoch}))
    assert torch.equal(weights[0], torch.ones(2, dtype=torch.float64))
    assert torch.equal(weights[3], torch.ones(2, dtype=torch.float64))
    means0 = torch.tensor([2.0, 2.0])
    means1 = torch.tensor([1.0, 1.0])
    r = means1 / means0
    ref = 2 * torch.softmax(r / 2.0, 0).double()
    assert torch.allclose(weights[4], ref)
    a.reset()
    assert torch.equal(a.loss_weights(torch.tensor([9.0, 1.0]), {"epoch": 7}),
                       torch.ones(2, dtype=torch.float64))


def test_dwa_ratio_changes_weights_towards_slow_tasks():
    a = agg("dwa")
    for epoch, L in enumerate([[4.0, 4.0], [1.0, 3.0], [1.0, 3.0]]):
        w = a.loss_weights(torch.tensor(L), {"epoch": epoch})
    assert float(w[1]) > float(w[0])  # task 1 decreased less: more weight
