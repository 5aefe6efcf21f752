"""MTLBackward(process_group=...) under plain torch.distributed: two gloo workers on
127.0.0.1, each with half of the global batch, apply the update one process computes on the
whole batch (non-linear aggregators, PSN, a stateful method, probes)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import mtlkit

STEPS = 6
METHODS = [("upgrad", None), ("mgda", {"name": "psn", "density": 0.3}), ("pcgrad", None),
           ("cagrad", {"name": "psn", "density": 0.3}), ("famo", None), ("mean", None)]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({
        "trunk": nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh()),
        "a": nn.Linear(8, 1), "b": nn.Linear(8, 1), "c": nn.Linear(8, 1)}).double()


def batch(step: int):
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    return x, {t: torch.randn(32, 1, generator=g, dtype=torch.float64) for t in "abc"}


def train(aggregator, mask, rank: int, world: int, group) -> tuple[dict, list]:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mtl = mtlkit.MTLBackward(model["trunk"], aggregator, mask=mask, probes=["cosine"],
                             optimizer=opt, process_group=group, seed=3)
    probes = []
    for step in range(STEPS):
        x, ys = batch(step)
        shard = slice(rank * 32 // world, (rank + 1) * 32 // world)
        z = model["trunk"](x[shard])
        losses = {t: ((model[t](z) - ys[t][shard]) ** 2).mean() for t in "abc"}
        opt.zero_grad()
        report = mtl.backward(losses, losses_after=lambda z=None, shard=shard, x=x, ys=ys: {
            t: ((model[t](model["trunk"](x[shard])) - ys[t][shard]) ** 2).mean() for t in "abc"})
        probes.append(report.probes)
        opt.step()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, probes


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {}
        for aggregator, mask in METHODS:
            out[aggregator] = train(aggregator, mask, rank, world, dist.group.WORLD)
        if rank == 0:  # numpy arrays travel by value (torch tensors would share memory)
            queue.put({agg: ({n: t.numpy() for n, t in params.items()}, probes)
                       for agg, (params, probes) in out.items()})
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_global_batch():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    result = queue.get(timeout=300)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for aggregator, mask in METHODS:
        ref_params, ref_probes = train(aggregator, mask, 0, 1, None)
        params, probes = result[aggregator]
        for name, ref in ref_params.items():
            # float64: the only difference is the summation order of the shard means
            torch.testing.assert_close(torch.from_numpy(params[name]), ref, rtol=1e-9, atol=1e-12,
                                       msg=f"{aggregator} {name}")
        for got, ref in zip(probes, ref_probes):
            assert got.keys() == ref.keys()
            for k in ref:
                assert got[k] == pytest.approx(ref[k], abs=1e-9), (aggregator, k)
