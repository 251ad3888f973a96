"""MAML (paper Algorithms 1 and 2): meta-gradients of every backend against a slow, obvious
reference, on our hyper and plain networks and on a 4-conv network of torch.nn alone; groups;
first order; BatchNorm modes; weight movement; errors. Tiny float64 models, 8x8 inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.meta import BACKENDS, MAML, make_outer_optimizer
from metahyper.models import WeightMovement, build_model, group_of, resolve_groups, stage_conv_weights

WAYS, SHOTS, QUERIES, SIZE, LR, STEPS = 3, 2, 2, 8, 0.5, 2
MODELS = {
    "hyper1": lambda: build_model("hyper-wrn-10-1", variant=1, num_classes=WAYS),
    "hyper2": lambda: build_model("hyper-wrn-10-1", variant=2, num_classes=WAYS),
    "plain": lambda: build_model("wrn-10-1", num_classes=WAYS),
}


def make_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(1)
    model = MODELS[kind]().double()
    with torch.no_grad():  # non-trivial "pretrained" BN statistics and affine parameters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.8, 1.2)
                m.bias.uniform_(-0.1, 0.1)
    return model


def make_tasks(n: int = 2, shots: int = SHOTS, seed: int = 2) -> list[SimpleNamespace]:
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        tasks.append(
            SimpleNamespace(
                support_x=torch.randn(WAYS * shots, 3, SIZE, SIZE, generator=g, dtype=torch.float64),
                support_y=torch.arange(WAYS).repeat(shots),
                query_x=torch.randn(WAYS * QUERIES, 3, SIZE, SIZE, generator=g, dtype=torch.float64),
                query_y=torch.arange(WAYS).repeat(QUERIES),
            )
        )
    return tasks


@pytest.fixture(scope="module")
def models():
    return {k: make_model(k) for k in MODELS}


@pytest.fixture(scope="module")
def tasks():
    return make_tasks()


def reference_meta_grads(model, tasks, inner, outer, *, lr, steps, first_order):
    """The obvious MAML: explicit loops, autograd.grad over the inner parameters only, forward
    with functional_call on CLONED buffers (BN in train mode: batch statistics)."""
    model.train()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def forward(fast, x):
        return functional_call(model, {**fast, **{n: b.clone() for n, b in buffers.items()}}, (x,))

    total = 0.0
    for t in tasks:
        fast = dict(params)
        for _ in range(steps):
            loss = F.cross_entropy(forward(fast, t.support_x), t.support_y)
            grads = torch.autograd.grad(loss, [fast[n] for n in inner], create_graph=not first_order)
            for n, g in zip(inner, grads):
                fast[n] = fast[n] - lr * (g.detach() if first_order else g)
        total = total + F.cross_entropy(forward(fast, t.query_x), t.query_y) / len(tasks)
    grads = torch.autograd.grad(total, [params[n] for n in outer], allow_unused=True)
    return {n: g for n, g in zip(outer, grads)}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def make_maml(model, inner_groups=None, outer_groups=None, **kwargs) -> MAML:
    """MAML over the parameter groups of our models (defaults: Algorithm 2 / Algorithm 1)."""
    _, _, inner, outer = resolve_groups(model, inner_groups, outer_groups)
    return MAML(model, inner=inner, outer=outer, **kwargs)


def run_meta_step(model, tasks, **kwargs):
    model.zero_grad(set_to_none=True)
    maml = make_maml(model, inner_lr=LR, inner_steps=STEPS, **kwargs)
    movement = WeightMovement(model)
    result = maml.meta_step(tasks, observers=[movement])
    result.movement = movement.pop()
    return maml, result, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# (1) meta-gradients of every backend equal the reference, first and second order ------------


@pytest.mark.parametrize("kind", ["hyper1", "hyper2", "plain"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_meta_gradients_match_reference(models, tasks, kind, first_order):
    model = models[kind]
    maml = make_maml(model)
    ref = reference_meta_grads(
        model, tasks, maml.inner_params, maml.outer_params, lr=LR, steps=STEPS, first_order=first_order
    )
    assert all(g is not None for g in ref.values())
    for backend in BACKENDS:
        _, result, grads = run_meta_step(model, tasks, first_order=first_order, backend=backend)
        assert set(grads) == set(maml.outer_params), backend
        for n in ref:
            assert rel_err(grads[n], ref[n]) < 1e-8, (backend, n, rel_err(grads[n], ref[n]))
        assert result.num_tasks == len(tasks) and 0.0 <= result.accuracy <= 1.0 and result.loss > 0
    model.zero_grad(set_to_none=True)


class FourConv(torch.nn.Module):
    """A Conv-4 network of torch.nn alone (conv without bias: BatchNorm removes it; ReLU, pool, linear head)."""

    def __init__(self, ways: int = WAYS, width: int = 6) -> None:
        super().__init__()
        blocks, c = [], 3
        for _ in range(4):
            blocks += [
                torch.nn.Conv2d(c, width, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(width),
                torch.nn.ReLU(),
            ]
            c = width
        self.features = torch.nn.Sequential(*blocks[:6], torch.nn.MaxPool2d(2), *blocks[6:])
        self.head = torch.nn.Linear(width, ways)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_any_torch_module(tasks, backend, first_order):
    """MAML on a plain torch.nn network: every parameter (default) or only the head adapts."""
    torch.manual_seed(3)
    model = FourConv().double()
    names = [n for n, _ in model.named_parameters()]
    for inner in (None, ["head.weight", "head.bias"]):
        maml = MAML(model, inner=inner, inner_lr=LR, inner_steps=STEPS, backend=backend)
        assert maml.inner_params == tuple(inner or names) and maml.outer_params == tuple(names)
        ref = reference_meta_grads(
            model, tasks, maml.inner_params, maml.outer_params, lr=LR, steps=STEPS, first_order=first_order
        )
        model.zero_grad(set_to_none=True)
        maml.meta_step(tasks, first_order=first_order)
        for n, p in model.named_parameters():
            assert rel_err(p.grad, ref[n]) < 1e-8, (inner, n, rel_err(p.grad, ref[n]))
    with pytest.raises(UserError, match="not trainable parameters"):
        MAML(model, inner=["head.wieght"])


def test_func_runs_images_channels_last_on_cpu(models, tasks):
    """On a CPU, backend func hands the images to the model in channels_last; vmap's single-task
    evaluation as given."""
    model = models["hyper2"]
    seen = []
    hook = model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    try:
        run_meta_step(model, tasks)
        make_maml(model).evaluate(tasks[0], steps=1)
        assert seen and set(seen) == {True}
        seen.clear()  # (higher runs a patched copy: no hooks; vmap's formats cannot be queried under vmap)
        make_maml(model, backend="vmap").evaluate(tasks[0], steps=1)
        assert seen and set(seen) == {False}
    finally:
        hook.remove()
        model.zero_grad(set_to_none=True)


def test_own_double_backwards_where_the_backward_is_differentiated(models, tasks, monkeypatch):
    """Backend func runs BatchNorm and convolutions through our double backwards exactly in the
    second-order inner loop (not the query pass, first order, evaluation, autocast or the other
    backends), never for the hypernetworks' k x k convolutions."""
    import metahyper.meta.kernels as kernels

    convs, bns = [], []
    monkeypatch.setattr(kernels, "conv2d_train", lambda *a: convs.append(a[0].shape) or F.conv2d(*a))
    monkeypatch.setattr(
        kernels,
        "batch_norm_train",
        lambda x, w, b, eps: bns.append(1) or F.batch_norm(x, None, None, w, b, True, 0.0, eps),
    )
    model = models["hyper2"]
    run_meta_step(model, tasks)
    per_forward = sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) + len(stage_conv_weights(model))
    bns_per_forward = sum(1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert 0 < len(convs) <= len(tasks) * STEPS * per_forward and all(s[2] > 3 for s in convs)
    assert len(bns) == len(tasks) * STEPS * bns_per_forward  # the inner forwards only, not the query pass
    for kwargs in ({"first_order": True}, {"backend": "higher"}, {"backend": "vmap"}, {"autocast": torch.bfloat16}):
        convs.clear(), bns.clear()
        run_meta_step(model, tasks, **kwargs)
        assert not convs and (not bns or kwargs.get("autocast")), kwargs
    bns.clear()
    make_maml(model).evaluate(tasks[0])
    assert not convs and not bns
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the caller's autocast: F.conv2d, which casts
        run_meta_step(model, tasks)
    assert not convs
    model.zero_grad(set_to_none=True)


# (2) the inner loop changes only inner groups; the outer step only outer groups ---------------


@pytest.mark.parametrize("kind", ["hyper1", "plain"])
def test_inner_loop_changes_only_inner_groups(models, tasks, kind):
    model = models[kind]
    model.zero_grad(set_to_none=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    maml = make_maml(model, inner_lr=LR)
    adapted = maml.adapt(tasks[0].support_x, tasks[0].support_y, steps=1)
    assert set(adapted) == set(maml.inner_params)
    expected = {"embeddings", "classifier"} if kind == "hyper1" else {"backbone", "classifier"}
    assert {group_of(n) for n in adapted} == expected
    for n, t in adapted.items():
        if n.endswith(".weight") or n.endswith(".embedding"):
            assert not torch.equal(t, before[n]), n
    for n, p in model.named_parameters():  # functional: the model itself is untouched
        assert torch.equal(p, before[n]) and p.grad is None, n


def test_outer_step_changes_only_outer_groups(tasks):
    model = make_model("hyper1")
    maml = make_maml(model, outer_groups=("hypernetworks", "classifier"), inner_lr=LR, inner_steps=1)
    named = dict(model.named_parameters())
    opt, sched = make_outer_optimizer([named[n] for n in maml.outer_params])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad(set_to_none=True)
    maml.meta_step(tasks)
    opt.step()
    sched.step()
    for n, p in model.named_parameters():
        group = group_of(n)
        changed = not torch.equal(p, before[n])
        assert changed == (group in ("hypernetworks", "classifier")), n
        assert (p.grad is not None) == (group in ("hypernetworks", "classifier")), n


def test_outer_optimizer_schedule():
    model = build_model("wrn-10-1", num_classes=WAYS)
    opt, sched = make_outer_optimizer(model.parameters())
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    factor = sched.lr_lambdas[0]
    assert [factor(i) for i in (0, 999, 1000, 2000, 3000, 4000, 10000)] == [1, 1, 0.5, 0.25, 0.125, 0.1, 0.1]
    hyper = build_model("hyper-wrn-10-1", variant=2, num_classes=WAYS)
    assert set(map(group_of, make_maml(hyper).outer_params)) == {"hypernetworks", "classifier", "backbone"}
    with pytest.raises(UserError, match="lr > 0"):
        make_outer_optimizer(model.parameters(), lr=0.0)


def test_outer_cosine_schedule_anneals_to_min_lr():
    """MAML++'s cosine annealing: lr_t = min + (lr - min) (1 + cos(pi t / T)) / 2."""
    import math

    model = build_model("wrn-10-1", num_classes=WAYS)
    opt, sched = make_outer_optimizer(model.parameters(), lr=1e-3, min_lr=1e-5, schedule="cosine", total=10)
    seen = []
    for _ in range(11):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(11)]
    assert seen == pytest.approx(expected, rel=1e-9)
    with pytest.raises(UserError, match="outer schedule must be one of halve, cosine"):
        make_outer_optimizer(model.parameters(), schedule="cosine")


# (3) first order and evaluation keep no graph --------------------------------------------------


def _graph_size(t: torch.Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return len(seen)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_first_order_and_eval_keep_no_graph(models, tasks, backend):
    model = models["hyper2"]
    model.zero_grad(set_to_none=True)
    maml = make_maml(model, inner_lr=LR, backend=backend)
    t = tasks[0]
    second = maml.adapt(t.support_x, t.support_y, steps=2)
    assert _graph_size(second["fc.weight"]) > 50  # through the whole unrolled inner loop
    first = maml.adapt(t.support_x, t.support_y, steps=2, first_order=True)
    for n, a in first.items():
        if group_of(n) == "embeddings":  # inner only: no path to anything
            assert a.grad_fn is None and not a.requires_grad
        else:  # classifier: theta + constant
            assert _graph_size(a) <= 2, n
            hyper = next(p for m, p in model.named_parameters() if group_of(m) == "hypernetworks")
            assert torch.autograd.grad(a.sum(), hyper, allow_unused=True)[0] is None
    evaluated = maml.adapt(t.support_x, t.support_y, steps=2, create_graph=False)
    assert all(not a.requires_grad for a in evaluated.values())
    for n in first:
        assert rel_err(first[n].detach(), second[n].detach()) < 1e-12
        assert rel_err(evaluated[n], second[n].detach()) < 1e-12
    acc = maml.evaluate(t, steps=2)
    assert 0.0 <= acc <= 1.0 and all(p.grad is None for p in model.parameters())


# (4) BatchNorm modes ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_transductive_bn_leaves_running_stats(models, tasks, backend):
    model = models["plain"]
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    run_meta_step(model, tasks, backend=backend)
    make_maml(model, backend=backend).evaluate(tasks[0], steps=1)
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert all(m.training and m.track_running_stats for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.zero_grad(set_to_none=True)


def test_bn_modes_normalise_as_documented(models, tasks):
    model = models["hyper1"]
    t = tasks[0]
    model.eval()
    with torch.no_grad():
        frozen_loss = F.cross_entropy(model(t.query_x), t.query_y).item()
    model.train()
    with torch.no_grad():
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        batch_loss = F.cross_entropy(functional_call(model, buffers, (t.query_x,)), t.query_y).item()
    model.eval()  # the mode is set by the option, whatever the model's mode
    transductive = make_maml(model, bn="transductive").meta_step([t], steps=0).loss
    model.train()
    frozen = make_maml(model, bn="frozen").meta_step([t], steps=0).loss
    assert transductive == pytest.approx(batch_loss, rel=1e-12)
    assert frozen == pytest.approx(frozen_loss, rel=1e-12)
    assert abs(frozen - transductive) > 1e-6
    assert model.training and all(m.training for m in model.modules())
    model.zero_grad(set_to_none=True)


# (5) weight movement (an observer from metahyper.models) ---------------------------------------


@pytest.mark.parametrize("kind", ["hyper1", "hyper2", "plain"])
def test_movement_keys_and_values(models, tasks, kind):
    model = models[kind]
    _, result, _ = run_meta_step(model, tasks)
    layers = stage_conv_weights(model)
    assert set(result.movement) == set(layers)
    assert all(v >= 0.0 for v in result.movement.values())
    hyper = {n for n, m in model.named_modules() if type(m).__name__ == "HyperConv2d"}
    for layer, v in result.movement.items():
        if kind == "plain" or layer in hyper:
            assert v > 0.0, layer
        else:  # variant 1: plain first conv of a stage, not adapted (backbone is outer only)
            assert v == 0.0, layer
    if kind == "hyper1":
        assert 0 < len(hyper) < len(layers)
    # movement = mean over tasks of ||W(adapted) - W||, recomputed by hand for one layer
    layer = sorted(hyper or layers)[0]
    maml = make_maml(model, inner_lr=LR, inner_steps=STEPS)
    w0 = layers[layer]({})
    by_hand = sum(
        (layers[layer]({n: a.detach() for n, a in maml.adapt(t.support_x, t.support_y).items()}) - w0).norm().item()
        for t in tasks
    ) / len(tasks)
    assert result.movement[layer] == pytest.approx(by_hand, rel=1e-9)
    model.zero_grad(set_to_none=True)


def test_movement_is_zero_for_head_only_adaptation(models, tasks):
    model = models["plain"]
    _, result, grads = run_meta_step(model, tasks, inner_groups=("classifier",))
    assert set(result.movement.values()) == {0.0} and grads
    model.zero_grad(set_to_none=True)


# (6) errors ------------------------------------------------------------------------------------------


def test_bad_names_are_user_errors(models, tasks):
    hyper, plain = models["hyper2"], models["plain"]
    with pytest.raises(UserError, match="embedings"):
        make_maml(hyper, inner_groups=("embedings",))
    with pytest.raises(UserError, match="no trainable parameters"):
        make_maml(plain, inner_groups=("embeddings", "classifier"))
    with pytest.raises(UserError, match="no trainable parameters"):
        make_maml(build_model("hyper-wrn-10-1", variant=1, compressed=True, num_classes=WAYS))
    with pytest.raises(UserError, match="hypernets"):
        make_maml(hyper, outer_groups="hypernets,classifier")
    with pytest.raises(UserError, match="backend"):
        MAML(hyper, backend="jax")
    with pytest.raises(UserError, match="batch-norm"):
        MAML(hyper, bn="running")
    with pytest.raises(UserError, match="inner learning rate"):
        MAML(hyper, inner_lr=float("nan"))
    with pytest.raises(UserError, match="no inner parameters"):
        MAML(hyper, inner=[])
    with pytest.raises(UserError, match="support_x"):
        MAML(hyper).meta_step([SimpleNamespace(query_x=1)])
    with pytest.raises(UserError, match="no tasks"):
        MAML(hyper).meta_step([])
    inner_groups, outer_groups, _, _ = resolve_groups(hyper, "embeddings, classifier", ["hypernetworks"])
    assert inner_groups == ("embeddings", "classifier") and outer_groups == ("hypernetworks",)


# (7) the vmap backend: all tasks of the meta-batch in one vmapped computation -------------------


@pytest.mark.parametrize("kind", ["hyper1", "hyper2", "plain"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_vmap_meta_gradients_match_reference(models, tasks, kind, first_order):
    model = models[kind]
    maml = make_maml(model)
    ref = reference_meta_grads(
        model, tasks, maml.inner_params, maml.outer_params, lr=LR, steps=STEPS, first_order=first_order
    )
    _, result, grads = run_meta_step(model, tasks, first_order=first_order, backend="vmap")
    assert set(grads) == set(maml.outer_params)
    for n in ref:
        assert rel_err(grads[n], ref[n]) < 1e-8, (n, rel_err(grads[n], ref[n]))
    _, expected, _ = run_meta_step(model, tasks, first_order=first_order, backend="func")
    assert result.num_tasks == expected.num_tasks == len(tasks)
    assert result.loss == pytest.approx(expected.loss, rel=1e-12)
    assert result.accuracy == pytest.approx(expected.accuracy, abs=1e-6)
    assert set(result.movement) == set(expected.movement)
    for layer, v in expected.movement.items():
        assert result.movement[layer] == pytest.approx(v, rel=1e-10, abs=1e-14), layer
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("bn", ["transductive", "frozen"])
def test_vmap_batchnorm_modes_and_loss_scale(models, tasks, bn):
    """Per-task batch statistics under vmap (transductive), running statistics (frozen), buffers
    and module flags untouched, ``loss_scale`` as in func."""
    model = models["plain"]
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    for backend in ("func", "vmap"):
        model.zero_grad(set_to_none=True)
        make_maml(model, inner_lr=LR, inner_steps=STEPS, bn=bn, backend=backend).meta_step(tasks, loss_scale=0.25)
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        if backend == "func":
            expected = grads
    for n in expected:
        assert rel_err(grads[n], expected[n]) < 1e-8, n
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n
    assert all(
        m.training and m.track_running_stats and "forward" not in vars(m)
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert make_maml(model, bn=bn, backend="vmap").evaluate(tasks[0], steps=1) == make_maml(model, bn=bn).evaluate(
        tasks[0], steps=1
    )
    model.zero_grad(set_to_none=True)


def test_vmap_keeps_tasks_apart(models, tasks):
    """A meta-batch of one task equals the task alone: a vmapped batch of two different tasks
    gives the mean of the two single-task meta-gradients (no statistics shared across tasks)."""
    model = models["hyper2"]
    singles = [run_meta_step(model, [t], backend="vmap")[2] for t in tasks]
    _, _, both = run_meta_step(model, tasks, backend="vmap")
    for n in both:
        assert rel_err(both[n], (singles[0][n] + singles[1][n]) / 2) < 1e-10, n
    model.zero_grad(set_to_none=True)


def test_vmap_unequal_tasks_is_user_error(models, tasks):
    model = models["hyper2"]
    model.zero_grad(set_to_none=True)
    three_shot = make_tasks(1, shots=3)[0]
    with pytest.raises(UserError, match="equal shapes.*backend='func'"):
        make_maml(model, backend="vmap").meta_step([tasks[0], three_shot])
    assert all(p.grad is None for p in model.parameters())


# (8) bf16 autocast (CPU) against float32 -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hyper2", "plain"])
def test_bf16_autocast_meta_gradients_close_to_float32(kind):
    """bf16 autocast changes the meta-gradient only by bf16 rounding: the whole outer-gradient
    vector within cosine 0.98 of float32, and the meta-gradient's relative error no larger
    (x1.5) than that of the plain query-loss gradient (0 inner steps) under the same autocast.
    On these tiny 8x8 models bf16 alone already gives ~10% relative error (BatchNorm with batch
    statistics: parameter gradients of the layers before a BN are sums with heavy cancellation),
    hence the tolerances. Gradients stay float32."""
    model = make_model(kind).float()
    tasks32 = [
        SimpleNamespace(**{k: v.float() if v.is_floating_point() else v for k, v in vars(t).items()})
        for t in make_tasks(2, shots=5)
    ]

    def grads(backend, steps, autocast):
        model.zero_grad(set_to_none=True)
        make_maml(model, inner_lr=0.01, inner_steps=steps, backend=backend, autocast=autocast).meta_step(tasks32)
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    floor = rel_err(grads("func", 0, torch.bfloat16), grads("func", 0, None))
    reference = grads("func", STEPS, None)
    assert reference.dtype == torch.float32
    for backend in ("func", "vmap"):
        g = grads(backend, STEPS, torch.bfloat16)
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
        assert F.cosine_similarity(g, reference, dim=0) > 0.98, backend
        assert rel_err(g, reference) < max(1.5 * floor, 5e-2), (backend, rel_err(g, reference), floor)
    model.zero_grad(set_to_none=True)


def test_evaluate_tasks_equals_evaluate(models):
    """``evaluate_tasks`` scores each task as :meth:`MAML.evaluate`, in order, with no gradient touched."""
    model = models["hyper2"]
    model.zero_grad(set_to_none=True)
    tasks5 = make_tasks(5, seed=11)
    maml = make_maml(model, inner_lr=LR, eval_inner_steps=3)
    expected = [maml.evaluate(t) for t in tasks5]
    assert maml.evaluate_tasks(tasks5) == expected
    assert len(set(expected)) > 1  # the tasks differ, so order is checked
    assert all(p.grad is None for p in model.parameters())
