"""Per-step BatchNorm (MAML++'s BNRS + BNWB, Antoniou et al. 2019): the conversion keeps a model's
function; a forward at inner step k uses slot min(k, slots - 1); the meta-gradient equals a
reference written here from the update rule with each step's BatchNorm (float64, backends func and
higher, checkpointed, first order, multi-step loss); meta-steps record each step's statistics in
its slot (once, also when the inner loop is recomputed) and evaluation uses them but records
nothing; backend vmap refuses it."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metahyper.errors import UserError
from metahyper.meta import MAML
from metahyper.models import PerStepBatchNorm2d, at_inner_step, build_model, per_step_batchnorm, to_plain
from metahyper.models.per_step_bn import inner_step

LR, STEPS, MOMENTUM = 0.3, 2, 0.1


def small_model(slots: int = STEPS + 1) -> nn.Module:
    """BatchNorm first (its statistics are the images'), then conv, BatchNorm, head; every slot's
    affine parameters and statistics different."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    ).double()  # fmt: skip
    per_step_batchnorm(model, slots)
    with torch.no_grad():
        for m in (model[0], model[2]):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.3, 0.3)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    return model


def tasks(n: int = 2, seed: int = 3) -> list[SimpleNamespace]:
    g = torch.Generator().manual_seed(seed)

    def images(n: int, shift: float) -> torch.Tensor:
        return torch.randn(n, 3, 5, 5, generator=g, dtype=torch.float64) * 1.5 + shift

    y = torch.arange(6) % 3
    return [
        SimpleNamespace(support_x=images(6, 0.5), support_y=y, query_x=images(6, -0.5), query_y=y) for _ in range(n)
    ]


def reference_forward(p: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> torch.Tensor:
    """The small model with step k's BatchNorm, batch statistics (transductive)."""
    h = F.batch_norm(x, None, None, p["0.weight"][k], p["0.bias"][k], True)
    h = F.conv2d(h, p["1.weight"], p["1.bias"], padding=1)
    h = F.relu(F.batch_norm(h, None, None, p["2.weight"][k], p["2.bias"][k], True))
    return F.linear(h.mean((2, 3)), p["6.weight"], p["6.bias"])


def reference_meta_gradient(model, batch, first_order=False, weights=None) -> dict[str, torch.Tensor]:
    """Algorithm 1 (every parameter inner and outer): support loss at step k with slot k, the query
    with slot ``STEPS`` (or, with ``weights``, after every step j with slot j)."""
    params = dict(model.named_parameters())
    total = 0.0
    for t in batch:
        fast = dict(params)
        for k in range(STEPS):
            loss = F.cross_entropy(reference_forward(fast, t.support_x, k), t.support_y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {n: v - LR * (g.detach() if first_order else g) for (n, v), g in zip(fast.items(), grads)}
            if weights is not None:
                query = F.cross_entropy(reference_forward(fast, t.query_x, k + 1), t.query_y)
                total = total + weights[k] * query / len(batch)
        if weights is None:
            total = total + F.cross_entropy(reference_forward(fast, t.query_x, STEPS), t.query_y) / len(batch)
    return dict(zip(params, torch.autograd.grad(total, list(params.values()))))


def test_conversion_keeps_the_function_and_the_names():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).double()
    with torch.no_grad():
        plain[1].weight.uniform_(0.5, 1.5), plain[1].running_mean.uniform_(-1, 1)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    per = per_step_batchnorm(copy.deepcopy(plain), 4)
    assert isinstance(per[1], PerStepBatchNorm2d) and per[1].weight.shape == (4, 4)
    assert list(dict(per.named_parameters())) == list(dict(plain.named_parameters()))
    for mode in (plain.eval, plain.train):
        mode(), per.train(plain.training)
        for step in (0, 3, 9):
            with at_inner_step(step):
                torch.testing.assert_close(per(x), plain(x))
    with pytest.raises(UserError, match="4 slots, not 2"):
        per_step_batchnorm(per, 2)


def test_a_forward_uses_the_slot_of_its_step_and_the_last_beyond():
    bn = small_model()[2].eval()
    x = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    for step, slot in [(0, 0), (1, 1), (2, 2), (7, 2)]:
        expected = F.batch_norm(x, bn.running_mean[slot], bn.running_var[slot], bn.weight[slot], bn.bias[slot])
        with at_inner_step(step):
            torch.testing.assert_close(bn(x), expected)


@pytest.mark.parametrize(
    "backend, kwargs",
    [("func", {}), ("higher", {}), ("func", {"inner_checkpoint": 1}), ("func", {"first_order": True})],
    ids=["func", "higher", "checkpointed", "first-order"],
)
def test_meta_gradient_matches_reference(backend, kwargs):
    model, batch = small_model(), tasks()
    expected = reference_meta_gradient(copy.deepcopy(model), batch, first_order=kwargs.get("first_order", False))
    MAML(model, inner_lr=LR, inner_steps=STEPS, backend=backend, **kwargs).meta_step(batch)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12)
    support_slots = model[2].weight.grad[:STEPS].abs().sum()  # second order reaches them, first order does not
    assert support_slots == 0 if kwargs.get("first_order") else support_slots > 0


def test_multi_step_loss_queries_each_step_with_its_slot():
    model, batch, weights = small_model(), tasks(), [0.3, 0.7]
    expected = reference_meta_gradient(copy.deepcopy(model), batch, weights=weights)
    MAML(model, inner_lr=LR, inner_steps=STEPS).meta_step(batch, step_weights=weights)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12)


def moved(running: torch.Tensor, batches: list[torch.Tensor], stat: str) -> torch.Tensor:
    """``running`` moved once towards the mean over ``batches`` of their per-channel mean or
    unbiased variance."""
    targets = []
    for batch in batches:
        values = batch.transpose(0, 1).reshape(batch.shape[1], -1)
        targets.append(values.mean(1) if stat == "mean" else values.var(1, unbiased=True))
    return (1 - MOMENTUM) * running + MOMENTUM * torch.stack(targets).mean(0)


@pytest.mark.parametrize(
    "backend, kwargs, msl",
    [("func", {}, False), ("higher", {}, False), ("func", {"inner_checkpoint": 1}, False), ("func", {}, True)],
    ids=["func", "higher", "checkpointed", "multi-step-loss"],
)
def test_meta_step_records_each_steps_statistics_in_its_slot(backend, kwargs, msl):
    """Slot k moves once per meta-step towards the mean statistics of the forwards at step k: the
    support forward of step k (k < STEPS) and the query after k steps (every k >= 1 with the
    multi-step loss, else k = STEPS), over the tasks."""
    model, batch = small_model(), tasks(2)
    bn = model[0]  # first layer: its inputs are the images, whatever the parameters
    before = {s: getattr(bn, f"running_{s}").clone() for s in ("mean", "var")}
    MAML(model, inner_lr=LR, inner_steps=STEPS, backend=backend, **kwargs).meta_step(
        batch, step_weights=[0.5, 0.5] if msl else None
    )
    for stat in ("mean", "var"):
        expected = before[stat].clone()
        for k in range(STEPS + 1):
            seen = [t.support_x for t in batch] if k < STEPS else []
            seen += [t.query_x for t in batch] if k == STEPS or (msl and k >= 1) else []
            expected[k] = moved(expected[k], seen, stat)
        torch.testing.assert_close(getattr(bn, f"running_{stat}"), expected)


def test_a_failed_meta_step_records_nothing():
    model, batch = small_model(), tasks(1)
    batch[0].query_x = batch[0].query_x[:, :1]  # one channel: the query forward fails after the inner loop
    before = model[0].running_mean.clone()
    with pytest.raises((IndexError, RuntimeError)):
        MAML(model, inner_lr=LR, inner_steps=STEPS).meta_step(batch)
    torch.testing.assert_close(model[0].running_mean, before)


def test_evaluation_uses_each_steps_slot_and_records_nothing():
    model, (task,) = small_model(), tasks(1)
    seen: list[int] = []
    model[0].register_forward_hook(lambda *_: seen.append(min(inner_step(), STEPS)))
    before = model[0].running_mean.clone()
    for bn in ("transductive", "frozen"):
        seen.clear()
        MAML(model, inner_lr=LR, inner_steps=STEPS, bn=bn).evaluate(task, steps=4)
        assert seen == [0, 1, 2, 2, 2]  # support forwards of steps 0..3, then the query after 4 steps
    torch.testing.assert_close(model[0].running_mean, before)


def test_frozen_evaluation_normalises_with_the_slots_statistics():
    model, (task,) = small_model(), tasks(1)
    maml = MAML(model, inner_lr=LR, inner_steps=STEPS, bn="frozen")
    adapted = maml.adapt(task.support_x, task.support_y, create_graph=False)
    params = {**dict(model.named_parameters()), **adapted}
    with torch.no_grad():
        h = F.batch_norm(task.query_x, model[0].running_mean[2], model[0].running_var[2], params["0.weight"][2],
                         params["0.bias"][2])  # fmt: skip
        h = F.conv2d(h, params["1.weight"], params["1.bias"], padding=1)
        h = F.batch_norm(h, model[2].running_mean[2], model[2].running_var[2], params["2.weight"][2],
                         params["2.bias"][2])  # fmt: skip
        expected = F.linear(F.relu(h).mean((2, 3)), params["6.weight"], params["6.bias"])
        with at_inner_step(STEPS):
            got = torch.func.functional_call(model.eval(), params, (task.query_x,))
    torch.testing.assert_close(got, expected)


def test_saved_models_rebuild_and_export_with_their_slots():
    model = build_model("hyper-wrn-10-1", num_classes=5, bn_steps=3).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PerStepBatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.running_mean.uniform_(-0.5, 0.5)
    again = build_model("hyper-wrn-10-1", num_classes=5, bn_steps=3).eval()
    again.load_state_dict(model.state_dict())
    plain, x = to_plain(model), torch.randn(2, 3, 16, 16)
    assert plain.config.bn_steps == 3
    for step in (0, 2, 5):
        with at_inner_step(step), torch.no_grad():
            torch.testing.assert_close(again(x), model(x))
            torch.testing.assert_close(plain(x), model(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="bn_steps must be >= 0"):
        build_model("wrn-10-1", bn_steps=-1)


def test_vmap_backend_refuses_per_step_batchnorm():
    with pytest.raises(UserError, match="backend 'vmap' cannot record per-step BatchNorm"):
        MAML(small_model(), backend="vmap")
