"""The inner loop's support set in chunks (``MAML(support_chunk=N)``): gradient accumulation gives
the same adapted parameters and the same meta-gradient as the whole support set at once, in
evaluation, first and second order and with the checkpointed inner loop. Tiny float64 models,
BatchNorm on running statistics (chunks need it), 7 support images in chunks of 3 (3 + 3 + 1)."""

from __future__ import annotations

import pytest
import torch

from tests.meta.test_maml import rel_err
from tests.meta.test_task_heads import make_model, make_task, maml_of

TASKS = [[3, 2, 2], [1, 4, 2]]  # 7 support images each


def tasks():
    return [make_task(shots, seed=20 + i) for i, shots in enumerate(TASKS)]


@pytest.mark.parametrize("kind", ["plain", "hyper1"])
@pytest.mark.parametrize("head", ["learned", "proto"])
def test_chunks_adapt_to_the_same_parameters(kind, head):
    model = make_model(kind)
    task = tasks()[0]
    adapted = [
        maml_of(model, head, bn="frozen", support_chunk=chunk).adapt(
            task.support_x, task.support_y, steps=3, create_graph=False
        )
        for chunk in (0, 3)
    ]
    assert adapted[0].keys() == adapted[1].keys()
    assert all(rel_err(adapted[1][n], adapted[0][n]) < 1e-10 for n in adapted[0])
    assert any(rel_err(adapted[0][n], model.get_parameter(n)) > 1e-3 for n in adapted[0])  # it did adapt


@pytest.mark.parametrize(
    "order", [dict(first_order=True), dict(first_order=False), dict(first_order=False, inner_checkpoint=1)],
    ids=["first", "second", "second-checkpointed"],
)  # fmt: skip
@pytest.mark.parametrize("head", ["learned", "zero", "proto"])
def test_chunks_give_the_same_meta_gradient(order, head):
    model = make_model("plain")
    grads = []
    for chunk in (0, 3):
        model.zero_grad(set_to_none=True)
        maml = maml_of(model, head, bn="frozen", inner_steps=2, support_chunk=chunk, **order)
        maml.meta_step(tasks())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(rel_err(grads[1][n], grads[0][n]) < 1e-10 for n in grads[0])
    model.zero_grad(set_to_none=True)


def test_chunks_under_vmap_give_the_same_meta_gradient():
    model = make_model("plain")
    equal = [make_task([3, 2, 2], seed=s) for s in (1, 2)]
    grads = []
    for backend, chunk in (("func", 0), ("vmap", 3)):
        model.zero_grad(set_to_none=True)
        maml_of(model, "zero", bn="frozen", inner_steps=2, backend=backend, support_chunk=chunk).meta_step(equal)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(rel_err(grads[1][n], grads[0][n]) < 1e-10 for n in grads[0])
    model.zero_grad(set_to_none=True)


def test_chunks_split_the_support_forwards():
    """Each inner forward sees at most a chunk: the accumulation really splits the support set."""
    model = make_model("plain")
    task = tasks()[0]
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        maml_of(model, "zero", bn="frozen", support_chunk=3).adapt(task.support_x, task.support_y, steps=2,
                                                                   create_graph=False)  # fmt: skip
    finally:
        hook.remove()
    assert sizes == [3, 3, 1, 3, 3, 1]
    torch.testing.assert_close(torch.tensor(sum(sizes)), torch.tensor(2 * 7))


@pytest.mark.parametrize("kind", ["plain", "hyper1"])
@pytest.mark.parametrize("rule", ["sgd", "meta-sgd", "lslr"])
def test_chunked_checkpointed_backward_gives_the_same_meta_gradient(kind, rule):
    """Second order with the checkpointed inner loop: each segment's backward pulls the cotangent
    back one chunk's graph at a time (segments of 2 steps of 3, learned rates included)."""
    model = make_model(kind)
    grads = []
    for chunk in (0, 3):
        model.zero_grad(set_to_none=True)
        maml = maml_of(model, "proto", bn="frozen", inner_steps=3, inner_rule=rule, support_chunk=chunk,
                       first_order=False, inner_checkpoint=2)  # fmt: skip
        maml.meta_step(tasks())
        learned = [*model.named_parameters(), *(("rule." + n, p) for n, p in maml.inner_rule.named_parameters())]
        grads.append({n: p.grad.clone() for n, p in learned if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("rule.") for n in grads[0]) == (rule != "sgd")
    assert all(rel_err(grads[1][n], grads[0][n]) < 1e-10 for n in grads[0])
    model.zero_grad(set_to_none=True)
