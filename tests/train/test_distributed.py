"""torch.distributed primitives on CPU with gloo, two processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from metahyper.train.distributed import (
    DistContext,
    all_gather_list,
    all_reduce_grads,
    convert_batchnorm,
    init_distributed,
    shard,
    shutdown,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).double()


def _batch():
    g = torch.Generator().manual_seed(5)
    return torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g)


def _worker(rank, world, port, out):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
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


# ------------------------------------------------------------------------------------------------
# One distributed meta-step equals one single-process meta-step (float64)
# ------------------------------------------------------------------------------------------------


def _meta_setup(name: str):
    from types import SimpleNamespace

    from metahyper.models import build_model

    torch.manual_seed(11)
    model = (
        build_model(name, variant=2, num_classes=3).double()
        if name.startswith("hyper-")
        else build_model(name, num_classes=3).double()
    )
    g = torch.Generator().manual_seed(12)
    tasks = [
        SimpleNamespace(
            support_x=torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64),
            support_y=torch.arange(3),
            query_x=torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
            query_y=torch.arange(3).repeat(2),
        )
        for _ in range(4)
    ]
    return model, tasks


def _meta_grads(model, tasks, ctx):
    from metahyper.meta import MAML

    maml = MAML(model, inner_steps=2)
    maml.meta_step(shard(tasks, ctx), loss_scale=1.0 / len(tasks))
    named = dict(model.named_parameters())
    outer = [named[n] for n in maml.outer_params]
    all_reduce_grads(outer, ctx)
    return {n: named[n].grad.clone() for n in maml.outer_params}


def _meta_worker(rank, world, port, out, name):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    model, tasks = _meta_setup(name)
    grads = _meta_grads(model, tasks, ctx)
    if ctx.is_main:
        torch.save(grads, out)
    shutdown(ctx)


@pytest.mark.parametrize("name", ["hyper-wrn-10-1", "wrn-10-1"])
def test_distributed_meta_step_equals_single_process(tmp_path, name):
    out = tmp_path / "grads.pt"
    mp.spawn(_meta_worker, args=(2, free_port(), str(out), name), nprocs=2, join=True)
    dist_grads = torch.load(out, weights_only=True)
    model, tasks = _meta_setup(name)
    single = _meta_grads(model, tasks, DistContext())
    assert set(dist_grads) == set(single) and single
    for n, g in single.items():
        assert g.abs().sum() > 0, n
        rel = (dist_grads[n] - g).norm() / g.norm()
        assert rel < 1e-10, (n, rel.item())


# ------------------------------------------------------------------------------------------------
# The commands under torchrun (gloo, 2 processes) against one process
# ------------------------------------------------------------------------------------------------


def torchrun(*args: str, env: dict | None = None, check: bool = True):
    """``torchrun --standalone --nproc_per_node 2 -m metahyper ARGS`` on one thread per process."""
    import subprocess
    import sys

    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "metahyper",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"torchrun metahyper {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        )
    return proc


def _states_close(a: dict, b: dict, rtol: float, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            assert torch.allclose(a[k], b[k], rtol=rtol, atol=atol), (k, (a[k] - b[k]).abs().max().item())
        else:
            assert torch.equal(a[k], b[k]), k


def test_torchrun_pretrain_epoch_equals_single_process(glyph_root, tmp_path, cli):
    from metahyper.data import ClassificationData, open_split
    from metahyper.train.checkpoint import load_checkpoint

    n = len(ClassificationData(open_split("glyphs-a", "train", root=glyph_root), "train", 0.2, seed=0))
    batch = next(b for b in range(48, 1, -2) if n % b == 0)  # every global batch splits evenly over 2 ranks
    common = [
        "pretrain",
        "--dataset",
        "glyphs-a",
        "--model",
        "hyper-wrn-10-1",
        "--image-size",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        str(batch),
        "--milestones",
        "1",
        "--val-fraction",
        "0.2",
        "--swa-start",
        "1",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
    ]
    cli(*common, "--out", str(tmp_path / "single"))
    torchrun(*common, "--out", str(tmp_path / "dist"))
    single, dist_ = load_checkpoint(tmp_path / "single" / "last.pt"), load_checkpoint(tmp_path / "dist" / "last.pt")
    # float32, sums taken in another order across ranks: equal up to rounding
    _states_close(single.state_dict, dist_.state_dict, rtol=1e-4, atol=1e-5)
    _states_close(
        load_checkpoint(tmp_path / "single" / "swa.pt").state_dict,
        load_checkpoint(tmp_path / "dist" / "swa.pt").state_dict,
        rtol=1e-4,
        atol=1e-5,
    )  # SWA average and its BatchNorm update
    for a, b in zip(single.extra["history"], dist_.extra["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["val_acc"] == b["val_acc"]
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir()
    )


def test_torchrun_meta_train_eval_and_resume(glyph_root, pretrained, tmp_path, cli, killed):
    from metahyper.train.checkpoint import load_checkpoint

    common = [
        "meta-train",
        "--train",
        "glyphs-a",
        "--test",
        "glyphs-b",
        "--init",
        str(pretrained["hyper-wrn-10-1"]),
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "2",
        "--meta-batch",
        "4",
        "--iterations",
        "3",
        "--inner-steps",
        "1",
        "--inner-steps-eval",
        "2",
        "--val-every",
        "3",
        "--val-episodes",
        "6",
        "--save-every",
        "1",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
    ]
    cli(*common, "--out", str(tmp_path / "single"))
    torchrun(*common, "--out", str(tmp_path / "dist"))
    single, dist_ = load_checkpoint(tmp_path / "single" / "last.pt"), load_checkpoint(tmp_path / "dist" / "last.pt")
    _states_close(single.state_dict, dist_.state_dict, rtol=1e-4, atol=1e-5)
    assert torch.allclose(
        single.extra["curves"]["loss"], dist_.extra["curves"]["loss"], rtol=1e-4
    )  # whole meta-batch logged
    assert single.extra["val_history"][0]["val_acc"] == pytest.approx(dist_.extra["val_history"][0]["val_acc"])

    # killed (SIGKILL before iteration 2, after last.pt of iteration 2 was written) and resumed
    proc = killed(tmp_path / "dist", tmp_path / "killed", 2, processes=2)
    assert proc.returncode != 0
    assert load_checkpoint(tmp_path / "killed" / "last.pt").extra["iteration"] == 2
    torchrun(*common, "--out", str(tmp_path / "killed"), "--resume")
    resumed = load_checkpoint(tmp_path / "killed" / "last.pt")
    for k, v in dist_.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k]), k

    # eval: episodes sharded and gathered, the same line as one process
    ev = [
        "eval",
        "--checkpoint",
        str(tmp_path / "single"),
        "--dataset",
        "glyphs-b",
        "--shots",
        "1",
        "--ways",
        "3",
        "--queries",
        "2",
        "--episodes",
        "9",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
    ]
    one = cli(*ev, "-o", str(tmp_path / "one.json"))
    two = torchrun(*ev, "-o", str(tmp_path / "two.json"))
    assert one.stdout.splitlines()[0] == two.stdout.splitlines()[0]
    import json

    a, b = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert a["accuracies"] == b["accuracies"] and a["mean"] == b["mean"] and a["ci95"] == b["ci95"]


def test_torchrun_maml_plus_plus_equals_one_process(glyph_root, pretrained, tmp_path, cli):
    """The maml++ preset (learned per-step rates, multi-step loss, per-step BatchNorm, first then
    second order, cosine lr) under torchrun: the same parameters, rates and per-step statistics
    (each rank's, averaged) as one process."""
    from metahyper.train.checkpoint import load_checkpoint

    common = [
        "meta-train", "--train", "glyphs-a", "--init", str(pretrained["hyper-wrn-10-1"]), "--algorithm", "maml++",
        "--ways", "3", "--shots", "1", "--queries", "2", "--meta-batch", "4", "--iterations", "2",
        "--inner-steps", "2", "--iterations-per-epoch", "1", "--msl-epochs", "1", "--first-order-iterations", "1",
        "--val-every", "0", "--data-root", str(glyph_root), "--device", "cpu", "--quiet",
    ]  # fmt: skip
    cli(*common, "--out", str(tmp_path / "single"))
    torchrun(*common, "--out", str(tmp_path / "dist"))
    single, dist_ = load_checkpoint(tmp_path / "single" / "last.pt"), load_checkpoint(tmp_path / "dist" / "last.pt")
    assert single.model_config.bn_steps == 3 and single.extra["maml"]["inner_rule"] == "lslr"
    _states_close(single.state_dict, dist_.state_dict, rtol=1e-4, atol=1e-5)
    _states_close(single.extra["inner_rule"], dist_.extra["inner_rule"], rtol=1e-4, atol=1e-6)
