"""torch.distributed primitives on CPU with gloo, two processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from metahyper.train.distributed import (
    DistContext, all_gather_list, all_reduce_grads, convert_batchnorm, init_distributed, shard, shutdown,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double()


def _batch():
    g = torch.Generator().manual_seed(5)
    return torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)


def _worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx = init_distributed("cpu")
    net = convert_batchnorm(_tiny_net(), ctx)
    x, y = _batch()
    part = shard(list(range(8)), ctx)
    loss = nn.functional.cross_entropy(net(x[part]), y[part])
    loss.backward()
    all_reduce_grads(net.parameters(), ctx)
    grads = [p.grad / world for p in net.parameters()]  # DDP averages over ranks
    gathered = all_gather_list([rank * 10 + i for i in range(2)], ctx)
    if ctx.is_main:
        torch.save({"grads": grads, "running": net[1].running_var.clone(), "gathered": gathered}, out)
    shutdown(ctx)


def test_shard_is_contiguous_and_complete():
    items = list(range(7))
    parts = [shard(items, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert shard(items, DistContext()) == items


def test_two_rank_step_with_global_batchnorm_equals_one_process(tmp_path):
    out = tmp_path / "dist.pt"
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    net = _tiny_net()
    x, y = _batch()
    nn.functional.cross_entropy(net(x), y).backward()
    for got, p in zip(result["grads"], net.parameters()):
        assert torch.allclose(got, p.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(result["running"], net[1].running_var, rtol=1e-10)
    assert result["gathered"] == [0, 1, 10, 11]


def test_single_process_context_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and ctx.is_main and not ctx.distributed
    net = _tiny_net()
    assert convert_batchnorm(net, ctx) is net and type(net[1]) is nn.BatchNorm2d
