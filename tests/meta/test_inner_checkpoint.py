"""Checkpointed second-order inner loop (``MAML(inner_checkpoint=N)``; Baranchuk et al. 2019):
the meta-gradient equals the one without checkpointing (float64, 1e-10 relative) on hyper and
plain networks, both BatchNorm modes, 1 and 5 shots, intervals 1, 2 and longer than the inner loop;
the graph kept until the backward stops growing with the steps; errors. Tiny models, 8x8 inputs."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

from metahyper.errors import UserError
from metahyper.meta import MAML
from metahyper.meta.inner_loop import inner_loop
from metahyper.models import WeightMovement
from tests.meta.test_maml import LR, FourConv, make_maml, make_model, make_tasks, rel_err

STEPS = 3  # interval 2: segments of 2 and 1 steps; interval 4: one segment shorter than its interval


@pytest.fixture(scope="module")
def models():
    return {k: make_model(k) for k in ("hyper1", "hyper2", "plain")}


def meta_grads(model, tasks, *, observe: bool = True, **kwargs):
    """``.grad`` of the outer parameters after one meta-step (and the observed movement)."""
    model.zero_grad(set_to_none=True)
    maml = make_maml(model, inner_lr=LR, inner_steps=STEPS, **kwargs)
    movement = WeightMovement(model)
    maml.meta_step(tasks, observers=[movement] if observe else [])
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads, movement.pop() if observe else None


def assert_same(grads, ref, what):
    assert set(grads) == set(ref), what
    for n in ref:
        assert rel_err(grads[n], ref[n]) < 1e-10, (what, n, rel_err(grads[n], ref[n]))


@pytest.mark.parametrize("shots", [1, 5])
@pytest.mark.parametrize("bn", ["transductive", "frozen"])
@pytest.mark.parametrize("kind", ["hyper1", "hyper2", "plain"])
def test_meta_gradient_unchanged(models, kind, bn, shots):
    model, tasks = models[kind], make_tasks(1, shots=shots)
    ref, ref_moves = meta_grads(model, tasks, bn=bn)
    assert ref and all(g.abs().sum() > 0 for g in ref.values())
    for interval in (1, 2, STEPS + 1):
        grads, moves = meta_grads(model, tasks, bn=bn, inner_checkpoint=interval)
        assert_same(grads, ref, interval)
        assert moves.keys() == ref_moves.keys()
        assert all(abs(moves[k] - ref_moves[k]) <= 1e-10 * max(1.0, abs(ref_moves[k])) for k in moves)
    grads, _ = meta_grads(model, tasks, bn=bn, inner_checkpoint=True, observe=False)  # True = every step; no observer
    assert_same(grads, ref, "True, no observer")


def test_per_call_override_and_two_tasks(models):
    model, tasks = models["hyper1"], make_tasks(2)
    ref, _ = meta_grads(model, tasks)
    maml = make_maml(model, inner_lr=LR, inner_steps=STEPS, inner_checkpoint=2)
    assert maml.inner_checkpoint == 2
    for override in (None, 0, 1, False):
        model.zero_grad(set_to_none=True)
        maml.meta_step(tasks, inner_checkpoint=override)
        assert_same({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, ref, override)
    model.zero_grad(set_to_none=True)


def test_higher_backend(models):
    model, tasks = models["hyper2"], make_tasks(1)
    ref, _ = meta_grads(model, tasks, backend="higher")
    for interval in (1, 2):
        assert_same(meta_grads(model, tasks, backend="higher", inner_checkpoint=interval)[0], ref, interval)


def test_any_torch_module_with_captured_parameters():
    """Only the head adapts: every conv and BatchNorm parameter reaches the inner loop as a tensor
    it closes over (``captured``); their meta-gradients still arrive."""
    torch.manual_seed(3)
    model, tasks = FourConv().double(), make_tasks(1)
    grads = []
    for interval in (0, 1, 2):
        model.zero_grad(set_to_none=True)
        MAML(
            model, inner=["head.weight", "head.bias"], inner_lr=LR, inner_steps=STEPS, inner_checkpoint=interval
        ).meta_step(tasks)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for g in grads[1:]:
        assert_same(g, grads[0], "FourConv")


def test_recomputation_uses_the_same_kernels(models, monkeypatch):
    """Backend func's inner loop convolves with conv2d_train; the recomputation in the backward
    too (same kernels, same rounding): twice the calls of the first pass."""
    import metahyper.meta.kernels as kernels

    calls = []
    monkeypatch.setattr(kernels, "conv2d_train", lambda *a: calls.append(1) or F.conv2d(*a))
    model, tasks = models["plain"], make_tasks(1)
    meta_grads(model, tasks)
    plain = len(calls)
    calls.clear()
    meta_grads(model, tasks, inner_checkpoint=1)
    assert plain > 0 and len(calls) == 2 * plain


def test_adapt_then_backward_outside_the_call(models):
    """The recomputation may run after the call returned (the caller's backward, outside MAML's
    BatchNorm mode): it restores the mode (frozen statistics here; running statistics untouched)."""
    model, (task,) = models["hyper1"], make_tasks(1)
    grads = []
    for interval in (0, 1, 2):
        maml = make_maml(model, inner_lr=LR, inner_steps=STEPS, bn="frozen", inner_checkpoint=interval)
        adapted = maml.adapt(task.support_x, task.support_y)
        stats = [b.clone() for b in model.buffers()]
        loss = sum((a**2).sum() for a in adapted.values())
        named = dict(model.named_parameters())
        grads.append(
            dict(
                zip(
                    maml.outer_params,
                    torch.autograd.grad(
                        loss, [named[n] for n in maml.outer_params], allow_unused=True, materialize_grads=True
                    ),
                )
            )
        )
        assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))
    for g in grads[1:]:
        assert_same(g, grads[0], "adapt")


class _Holder:
    """A saved tensor, detached: holding its ``grad_fn`` would make a reference cycle through the
    node that saved it (its own output) that Python's gc cannot see; autograd re-attaches the
    gradient edge on unpacking."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor.detach()


def saved_numel(maml: MAML, task, steps: int, interval: int) -> int:
    """Elements of the tensors the graph of the adapted parameters keeps for the backward."""
    holders: weakref.WeakSet = weakref.WeakSet()

    def pack(t: torch.Tensor) -> _Holder:
        holder = _Holder(t)
        holders.add(holder)
        return holder

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.tensor):
        adapted = maml.adapt(task.support_x, task.support_y, steps=steps, inner_checkpoint=interval)
    gc.collect()
    total = sum(h.tensor.numel() for h in holders)
    del adapted
    return total


def test_saved_tensors_stop_growing(models):
    """Without checkpointing every step keeps its activations; with interval 1 a step keeps only
    its starting parameters; with one segment the kept graph does not depend on the steps."""
    model, (task,) = models["hyper1"], make_tasks(1, shots=5)
    maml = make_maml(model, inner_lr=LR)
    inner_numel = sum(p.numel() for n, p in model.named_parameters() if n in maml.inner_params)
    growth = {k: saved_numel(maml, task, 6, k) - saved_numel(maml, task, 2, k) for k in (0, 1)}
    assert growth[1] <= 4 * inner_numel
    assert growth[0] > 4 * growth[1]
    assert saved_numel(maml, task, 6, 10) == saved_numel(maml, task, 2, 10)


def test_first_order_and_evaluation_ignore_it(models):
    model, tasks = models["plain"], make_tasks(1)
    ref, _ = meta_grads(model, tasks, first_order=True)
    assert_same(meta_grads(model, tasks, first_order=True, inner_checkpoint=1)[0], ref, "first order")
    maml = make_maml(model, inner_checkpoint=1)
    assert maml.evaluate(tasks[0], steps=2) == make_maml(model).evaluate(tasks[0], steps=2)


def test_errors(models):
    model = models["hyper2"]
    for bad in (-1, 1.5, "2"):
        with pytest.raises(UserError, match="inner_checkpoint must be"):
            make_maml(model, inner_checkpoint=bad)
    with pytest.raises(UserError, match="inner_checkpoint must be"):
        make_maml(model).meta_step(make_tasks(1), inner_checkpoint=-2)
    with pytest.raises(UserError, match="backend 'vmap' cannot checkpoint"):
        make_maml(model, backend="vmap", inner_checkpoint=1)
    vmap = make_maml(model, backend="vmap", first_order=True, inner_checkpoint=1)  # first order: nothing to checkpoint
    with pytest.raises(UserError, match="backend 'vmap' cannot checkpoint"):
        vmap.meta_step(make_tasks(1), first_order=False)
    with pytest.raises(UserError, match="checkpoint interval must be >= 0"):
        inner_loop(lambda p, x: x, {}, torch.zeros(1), torch.zeros(1), inner_checkpoint=-1)
