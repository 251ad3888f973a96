"""Zero-initialised head (Ye & Chao 2022, "How to train your MAML to excel in few-shot
classification"): the classifier starts every task at zero, so relabelling a task's classes only
permutes the logits; the query loss and the meta-gradient do not change. A learned head does not
have this property (the check can fail)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.models import resolve_groups
from tests.meta.test_maml import LR, make_maml, make_model, make_tasks, rel_err

PERM = torch.tensor([2, 0, 1])  # class c of the task is called PERM[c] in the relabelled task


def relabelled(task):
    return SimpleNamespace(support_x=task.support_x, support_y=PERM[task.support_y], query_x=task.query_x,
                           query_y=PERM[task.query_y])  # fmt: skip


def query_logits(model, adapted, task):
    params = {**dict(model.named_parameters()), **adapted}
    with torch.no_grad():
        return functional_call(model, {**params, **{n: b.clone() for n, b in model.named_buffers()}}, (task.query_x,))


@pytest.mark.parametrize("kind", ["plain", "hyper1"])
def test_relabelling_a_task_permutes_the_logits_and_keeps_loss_and_meta_gradient(kind):
    model = make_model(kind)
    head = resolve_groups(model, "classifier").inner
    maml = make_maml(model, inner_lr=LR, inner_steps=2, head="zero", classifier=head)
    assert not set(head) & set(maml.outer_params)  # nothing to learn in a zero start
    task = make_tasks(1)[0]
    losses, grads, logits = [], [], []
    for t in (task, relabelled(task)):
        model.zero_grad(set_to_none=True)
        losses.append(maml.meta_step([t]).loss)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.train()
        logits.append(query_logits(model, maml.adapt(t.support_x, t.support_y, create_graph=False), t))
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    assert rel_err(logits[1][:, PERM], logits[0]) < 1e-10  # column PERM[c] of the relabelled = column c
    assert grads[0].keys() == grads[1].keys() and all(rel_err(grads[1][n], grads[0][n]) < 1e-10 for n in grads[0])
    model.zero_grad(set_to_none=True)
    learned = make_maml(model, inner_lr=LR, inner_steps=2)  # the pretrained head breaks the symmetry
    assert learned.meta_step([task]).loss != pytest.approx(learned.meta_step([relabelled(task)]).loss, rel=1e-6)
    model.zero_grad(set_to_none=True)


def test_zero_head_must_adapt():
    model = make_model("plain")
    with pytest.raises(UserError, match="are not inner parameters"):
        make_maml(model, inner_groups=("backbone",), head="zero", classifier=resolve_groups(model, "classifier").inner)
