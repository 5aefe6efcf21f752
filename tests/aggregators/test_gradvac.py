import math

import numpy as np
import torch

from tests.aggregators.helpers import agg, make_J


def gradvac_loop(J, gen, targets, beta):
    """Independent reference on the n-vectors (paper Alg. 1, whole-model granularity)."""
    K = J.shape[0]
    out = []
    for i in range(K):
        g = J[i].clone()
        others = [j for j in range(K) if j != i]
        for t in torch.randperm(K - 1, generator=gen).tolist():
            j = others[t]
            phi = float(g @ J[j] / (g.norm() * J[j].norm()))
            tgt = targets[i, j]
            if phi < tgt:
                g = g + g.norm() * (tgt * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - tgt**2)) \
                    / (J[j].norm() * math.sqrt(1 - tgt**2)) * J[j]
            targets[i, j] = (1 - beta) * tgt + beta * phi
        out.append(g)
    return torch.stack(out).sum(0)


def test_gradvac_matches_loop_over_several_steps_and_resets():
    a = agg("gradvac", beta=0.3)
    targets = np.zeros((4, 4))
    for step in range(3):
        J = make_J(4, 11, seed=step)
        d = a(J, generator=torch.Generator().manual_seed(step))
        ref = gradvac_loop(J, torch.Generator().manual_seed(step), targets, 0.3)
        assert torch.allclose(d, ref, atol=1e-9)
    assert np.abs(targets).sum() > 0
    a.reset()
    J = make_J(4, 11, seed=0)
    fresh = gradvac_loop(J, torch.Generator().manual_seed(0), np.zeros((4, 4)), 0.3)
    assert torch.allclose(a(J, generator=torch.Generator().manual_seed(0)), fresh, atol=1e-9)
