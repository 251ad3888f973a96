"""Heads built at each task's width (metahyper.meta.heads): Proto-MAML's initialisation against its
formula, the meta-gradients of the zero and Proto-MAML heads on tasks of varying ways against an
explicit reference written from the update rule (every backend that takes them; first and second
order), and the refusals of the fixed-width learned head. Tiny float64 models, 8x8 inputs, tasks
built by hand with uneven shots."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.meta import MAML
from metahyper.meta.rules import MetaSGD
from metahyper.models import resolve_groups
from tests.meta.test_maml import LR, SIZE, make_model, rel_err

CLASSIFIER = ("fc.weight", "fc.bias")


def make_task(shots: list[int], queries: int = 2, seed: int = 5) -> SimpleNamespace:
    """One task of ``len(shots)`` ways, ``shots[k]`` support images of class k (in a shuffled
    order) and ``queries`` query images per class."""
    g = torch.Generator().manual_seed(seed)
    ways = len(shots)
    support_y = torch.cat([torch.full((k,), c) for c, k in enumerate(shots)])
    support_y = support_y[torch.randperm(len(support_y), generator=g)]
    return SimpleNamespace(
        support_x=torch.randn(len(support_y), 3, SIZE, SIZE, generator=g, dtype=torch.float64),
        support_y=support_y,
        query_x=torch.randn(ways * queries, 3, SIZE, SIZE, generator=g, dtype=torch.float64),
        query_y=torch.arange(ways).repeat(queries),
    )


VARIABLE = [[2, 1], [1, 3, 2, 1], [2, 2, 1]]  # ways 2, 4, 3 (the models are built 3-way)


def variable_tasks() -> list[SimpleNamespace]:
    return [make_task(shots, seed=10 + i) for i, shots in enumerate(VARIABLE)]


def maml_of(model, head: str, **kwargs) -> MAML:
    _, _, inner, outer = resolve_groups(model)
    return MAML(model, inner=inner, outer=outer, head=head, classifier=CLASSIFIER, inner_lr=LR, **kwargs)


def reference_meta_grads(model, tasks, inner, outer, head, *, steps, first_order, rates=None):
    """The update rule written out: per task the classifier starts at the task's width (zeros, or
    ``2 c_k`` / ``-||c_k||^2`` with ``c_k`` the mean of the fc layer's input over class k's support
    images, from a forward with the meta-parameters), then ``steps`` SGD steps on the inner
    parameters, each step's gradient the partial derivative of the support loss w.r.t. each inner
    parameter (:func:`torch.func.grad`; first order: detached); the mean query loss is differentiated
    w.r.t. the outer parameters. Forwards on cloned buffers, BatchNorm on batch statistics.
    ``rates`` (Meta-SGD, name -> leaf tensor): step ``p - rates[p] * g`` elementwise, the head's
    one-row rates repeated over the task's classes; their gradients are returned as ``rate:<name>``."""
    model.train()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    seen = []
    hook = model.fc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))

    def forward(fast, x):
        return functional_call(model, {**fast, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    total = 0.0
    try:
        for t in tasks:
            ways, fast = int(t.support_y.max()) + 1, dict(params)
            if head == "proto":
                forward(fast, t.support_x)
                c = torch.stack([seen[-1][t.support_y == k].mean(0) for k in range(ways)])
                fast["fc.weight"], fast["fc.bias"] = 2 * c, -(c**2).sum(1)
            else:
                fast["fc.weight"] = torch.zeros(ways, model.fc.in_features, dtype=torch.float64, requires_grad=True)
                fast["fc.bias"] = torch.zeros(ways, dtype=torch.float64, requires_grad=True)
            for _ in range(steps):  # partial derivatives: the head is a variable of its own
                grads = torch.func.grad(
                    lambda own, fast=fast, t=t: F.cross_entropy(forward({**fast, **own}, t.support_x), t.support_y)
                )({n: fast[n] for n in inner})
                for n, g in grads.items():
                    rate = LR if rates is None else rates[n].expand(ways, *g.shape[1:]) if n in CLASSIFIER else rates[n]
                    fast[n] = fast[n] - rate * (g.detach() if first_order else g)
            total = total + F.cross_entropy(forward(fast, t.query_x), t.query_y) / len(tasks)
    finally:
        hook.remove()
    rates = rates or {}
    grads = torch.autograd.grad(total, [params[n] for n in outer] + list(rates.values()), allow_unused=True)
    return dict(zip([*outer, *(f"rate:{n}" for n in rates)], grads))


@pytest.mark.parametrize("kind", ["plain", "hyper1"])
def test_proto_head_starts_at_twice_the_prototypes_and_minus_their_squared_norms(kind):
    model = make_model(kind).eval()
    task = make_task([3, 1, 2, 2])
    maml = maml_of(model, "proto", bn="frozen")
    start = maml.adapt(task.support_x, task.support_y, steps=0, create_graph=False)
    with torch.no_grad():
        f = model.features(task.support_x)
    c = torch.stack([f[task.support_y == k].mean(0) for k in range(4)])
    torch.testing.assert_close(start["fc.weight"], 2 * c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(start["fc.bias"], -(c**2).sum(1), rtol=1e-12, atol=1e-12)
    assert model.fc.out_features == 3  # the model's own classifier is left as it was


@pytest.mark.parametrize("kind", ["plain", "hyper1"])
@pytest.mark.parametrize("head", ["proto", "zero"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_meta_gradients_on_variable_ways_match_the_update_rule(kind, head, first_order):
    model = make_model(kind)
    tasks = variable_tasks()
    probe = maml_of(model, head)
    assert not set(CLASSIFIER) & set(probe.outer_params)  # built per task: never meta-learned
    ref = reference_meta_grads(
        model, tasks, probe.inner_params, probe.outer_params, head, steps=2, first_order=first_order
    )
    assert all(g is not None and g.abs().sum() > 0 for g in ref.values())
    for backend in ("func", "higher"):
        model.zero_grad(set_to_none=True)
        result = maml_of(model, head, backend=backend, inner_steps=2).meta_step(tasks, first_order=first_order)
        assert result.num_tasks == 3 and result.loss > 0
        for n in ref:
            assert rel_err(model.get_parameter(n).grad, ref[n]) < 1e-8, (backend, n)
        assert model.fc.weight.grad is None
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("head", ["proto", "zero"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_meta_sgd_learns_one_row_of_head_rates_shared_by_the_classes(head, first_order):
    model = make_model("hyper1")
    tasks = variable_tasks()
    base = maml_of(model, head, inner_rule="meta-sgd", inner_steps=2)
    rates = base.inner_lrs
    assert rates["fc/weight"].shape == (1, model.fc.in_features) and rates["fc/bias"].shape == (1,)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for r in rates.values():  # distinct rates, so that a wrong index or broadcast shows
            r.copy_(LR * (0.5 + torch.rand(r.shape, generator=g, dtype=r.dtype)))
    leaves = {n: rates[n.replace(".", "/")].detach().clone().requires_grad_() for n in base.inner_params}
    ref = reference_meta_grads(
        model, tasks, base.inner_params, base.outer_params, head, steps=2, first_order=first_order, rates=leaves
    )
    assert all(g is not None and g.abs().sum() > 0 for g in ref.values())
    for backend in ("func", "higher"):
        model.zero_grad(set_to_none=True)
        maml = maml_of(model, head, inner_rule="meta-sgd", inner_steps=2, backend=backend)
        maml.load_state_dict(base.state_dict())
        maml.meta_step(tasks, first_order=first_order)
        got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        got.update({f"rate:{n}": maml.inner_lrs[n.replace(".", "/")].grad for n in leaves})
        assert set(got) == set(ref), backend
        for n in ref:
            assert rel_err(got[n], ref[n]) < 1e-8, (backend, n, rel_err(got[n], ref[n]))
    model.zero_grad(set_to_none=True)


def test_vmap_takes_equal_ways_and_refuses_variable_ways():
    model = make_model("plain")
    equal = [make_task([2, 1, 1, 2], seed=s) for s in (1, 2)]
    probe = maml_of(model, "proto")
    ref = reference_meta_grads(
        model, equal, probe.inner_params, probe.outer_params, "proto", steps=1, first_order=False
    )
    model.zero_grad(set_to_none=True)
    maml_of(model, "proto", backend="vmap", inner_steps=1).meta_step(equal)
    assert all(rel_err(model.get_parameter(n).grad, ref[n]) < 1e-8 for n in ref)
    model.zero_grad(set_to_none=True)
    uneven = [make_task([2, 1, 1, 2], queries=3), make_task([2, 2, 2], queries=4)]  # same shapes, 4 and 3 ways
    with pytest.raises(UserError, match="backend 'vmap' needs tasks of equal ways"):
        maml_of(model, "zero", backend="vmap").meta_step(uneven)


def test_learned_head_refuses_other_ways_before_any_work():
    model = make_model("plain")  # a 3-way classifier
    maml = maml_of(model, "learned")
    model.zero_grad(set_to_none=True)
    tasks = [make_task([1, 1, 1]), make_task([1, 1, 1, 1])]
    with pytest.raises(UserError, match=r"fixed 3-way classifier, but task 1 has 4 ways.*--head zero or --head proto"):
        maml.meta_step(tasks)
    assert all(p.grad is None for p in model.parameters())  # task 0 was not run either
    with pytest.raises(UserError, match="task 0 has 2 ways"):
        maml.evaluate(make_task([1, 2]))
    maml.meta_step(tasks[:1])  # its own width is fine
    model.zero_grad(set_to_none=True)


def test_refusals_of_heads_and_chunks():
    model = make_model("plain")
    _, _, inner, _ = resolve_groups(model)
    built = MetaSGD({n: p for n, p in model.named_parameters() if n in inner}, LR, 1)
    with pytest.raises(UserError, match="built inner rule 'meta-sgd' learns a tensor of the 3-way classifier's shape"):
        maml_of(model, "zero", inner_rule=built).evaluate(make_task([1, 1, 1, 1]))
    with pytest.raises(UserError, match="labels 0..ways-1 with a support image for each class"):
        maml_of(model, "proto").evaluate(
            SimpleNamespace(**{**vars(make_task([1, 1])), "support_y": torch.tensor([0, 2])})
        )
    with pytest.raises(UserError, match="needs the classifier"):
        MAML(model, head="proto")
    with pytest.raises(UserError, match="unknown head"):
        maml_of(model, "prototype")
    with pytest.raises(UserError, match="transductive BatchNorm"):
        maml_of(model, "proto", support_chunk=2)
