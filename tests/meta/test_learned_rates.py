"""Learned inner rates: Meta-SGD (Li et al. 2017: θ' = θ - α ∘ ∇L, α of θ's shape) and LSLR
(Antoniou et al. 2019: per parameter one rate per inner step). Their float64 meta-gradients, w.r.t.
the model's outer parameters AND the rates, equal an independent implementation of each paper's
update rule written here, for Algorithm 1 (plain) and Algorithm 2 (hyper), on every backend and
with the checkpointed inner loop; LSLR uses rate [step] and reuses the last past its steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahyper.meta import BACKENDS
from tests.meta.test_maml import LR, make_maml, make_model, make_tasks, rel_err

STEPS = 3


def reference(model, tasks, inner, outer, rate, first_order=False):
    """MAML with inner step ``p <- p - rate(n, k) * g`` written out (BatchNorm with batch
    statistics on cloned buffers), the mean query loss; first order: ``g`` a constant."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def forward(fast, x):
        return functional_call(model, {**fast, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    total = 0.0
    for t in tasks:
        fast = dict(params)
        for k in range(STEPS):
            loss = F.cross_entropy(forward(fast, t.support_x), t.support_y)
            grads = torch.autograd.grad(loss, [fast[n] for n in inner], create_graph=not first_order)
            for n, g in zip(inner, grads):
                fast[n] = fast[n] - rate(n, k) * g
        total = total + F.cross_entropy(forward(fast, t.query_x), t.query_y) / len(tasks)
    return total


def learned_rates(kind, rule, init):
    """A model, its MAML with ``rule`` and rates set to distinct values (so that a wrong index or
    shape shows), plus the rates as independent leaf tensors for the reference."""
    model = make_model(kind)
    maml = make_maml(model, inner_rule=rule, inner_lr=LR, inner_steps=STEPS)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for r in maml.inner_lrs.values():
            r.copy_(init * (0.5 + torch.rand(r.shape, generator=g, dtype=r.dtype)))
    leaves = {n: maml.inner_lrs[n.replace(".", "/")].detach().clone().requires_grad_() for n in maml.inner_params}
    return model, maml, leaves


@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
@pytest.mark.parametrize("kind", ["plain", "hyper1"], ids=["algorithm1", "algorithm2"])
@pytest.mark.parametrize("rule", ["meta-sgd", "lslr"])
def test_learned_rate_meta_gradients_match_the_update_rule(kind, rule, first_order):
    model, base, leaves = learned_rates(kind, rule, LR)
    tasks = make_tasks(2)
    model.train()
    index = (lambda n, k: leaves[n]) if rule == "meta-sgd" else (lambda n, k: leaves[n][k])
    total = reference(model, tasks, base.inner_params, base.outer_params, index, first_order)
    named = dict(model.named_parameters())
    wrt = [named[n] for n in base.outer_params] + list(leaves.values())
    ref = dict(zip([*base.outer_params, *(f"rate:{n}" for n in leaves)], torch.autograd.grad(total, wrt)))
    for backend in BACKENDS:
        for interval in (0, 2) if backend != "vmap" and not first_order else (0,):
            model.zero_grad(set_to_none=True)
            maml = make_maml(
                model, inner_rule=rule, inner_lr=LR, inner_steps=STEPS, backend=backend, inner_checkpoint=interval,
                first_order=first_order,
            )  # fmt: skip
            maml.load_state_dict(base.state_dict())
            maml.meta_step(tasks)
            got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            got.update({f"rate:{n}": maml.inner_lrs[n.replace(".", "/")].grad for n in leaves})
            assert set(got) == set(ref), backend
            for n in ref:
                assert rel_err(got[n], ref[n]) < 1e-8, (rule, backend, interval, n, rel_err(got[n], ref[n]))
    model.zero_grad(set_to_none=True)


def test_meta_sgd_rates_are_one_parameter_dict_in_model_order():
    model = make_model("hyper1")
    maml = make_maml(model, inner_rule="meta-sgd", inner_lr=0.25)
    named = dict(model.named_parameters())
    assert isinstance(maml.inner_lrs, torch.nn.ParameterDict)
    assert [k.replace("/", ".") for k in maml.inner_lrs] == list(maml.inner_params)
    for k, rate in maml.inner_lrs.items():
        assert rate.shape == named[k.replace("/", ".")].shape and torch.all(rate == 0.25)
    assert all(any(r is p for p in maml.outer_parameters()) for r in maml.inner_lrs.values())


def test_lslr_uses_the_rate_of_each_step_and_reuses_the_last_past_its_steps():
    model = make_model("plain")
    maml = make_maml(model, inner_rule="lslr", inner_lr=LR, inner_steps=2)
    assert all(r.shape == (3,) and torch.all(r == LR) for r in maml.inner_lrs.values())
    with torch.no_grad():
        for r in maml.inner_lrs.values():
            r.copy_(torch.tensor([0.05, 0.1, 0.15]))
    task = make_tasks(1)[0]
    adapted = maml.adapt(task.support_x, task.support_y, steps=4, create_graph=False)
    model.train()
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    fast = {n: params[n].detach() for n in maml.inner_params}
    for rate in (0.05, 0.1, 0.15, 0.15):
        fast = {n: p.requires_grad_() for n, p in fast.items()}
        logits = functional_call(
            model, {**params, **fast, **{n: b.clone() for n, b in buffers.items()}}, (task.support_x,)
        )
        grads = torch.autograd.grad(F.cross_entropy(logits, task.support_y), list(fast.values()))
        fast = {n: (p - rate * g).detach() for (n, p), g in zip(fast.items(), grads)}
    for n in fast:
        assert rel_err(adapted[n], fast[n]) < 1e-8, n  # a wrong rate index is off by ~1e-1
