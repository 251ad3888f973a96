"""tools/stock_higher.py, the benchmark's baseline: the same meta-gradient as the default backend
(float64), first and second order, while second order really differs from first order here."""

from __future__ import annotations

import torch

from metahyper.meta import MAML
from metahyper.models import group_of, resolve_groups
from tests.meta.test_maml import LR, STEPS, make_model, make_tasks, rel_err
from tests.tools.conftest import load_tool


def test_stock_higher_matches_func():
    stock = load_tool("stock_higher").StockHigherBackend
    model, tasks = make_model("hyper2"), make_tasks()
    _, _, inner, outer = resolve_groups(model)

    def grads(backend, first_order):
        model.zero_grad(set_to_none=True)
        MAML(model, inner=inner, outer=outer, inner_lr=LR, inner_steps=STEPS, backend=backend).meta_step(
            tasks, first_order=first_order
        )
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    func2, stock2, func1, stock1 = grads("func", False), grads(stock, False), grads("func", True), grads(stock, True)
    assert set(func2) == set(stock2) == set(outer) == set(stock1)
    for n in func2:
        assert rel_err(stock2[n], func2[n]) < 1e-8 and rel_err(stock1[n], func1[n]) < 1e-8, n
    # the test is only meaningful if second order matters at this learning rate
    assert max(rel_err(func1[n], func2[n]) for n in func2 if group_of(n) == "hypernetworks") > 1e-4
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
