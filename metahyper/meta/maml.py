"""MAML for plain and hyper residual networks (paper section 4, Algorithms 1 and 2).

One functional primitive, :func:`inner_loop`, adapts a dict of named parameters by SGD on a
task's support set (forward through :func:`torch.func.functional_call`); :class:`MAML` is a thin
class over it that chooses the parameter groups, the batch-norm mode and the backend, runs the
meta-batch (:meth:`MAML.meta_step`) and evaluates (:meth:`MAML.evaluate`).

Parameter groups (names from :func:`metahyper.models.param_groups`)
--------------------------------------------------------------------
* hyper models (Algorithm 2): inner loop ``("embeddings", "classifier")``; outer loop
  ``("hypernetworks", "classifier", "backbone")``. The paper names only E (inner), H (outer) and
  the classifier (both); it is silent on the remaining plain layers (stem, the plain first conv of
  a variant-1 stage, shortcuts, BatchNorm affine parameters): here they learn in the OUTER loop
  (the ``backbone`` group), like every parameter of a plain MAML network, and do not adapt.
  Embeddings are inner-only: the meta-learner does not change their initialisation.
* plain models (Algorithm 1): every group in both loops.

Both are options (``inner_groups`` / ``outer_groups``); parameters in neither group are constants
(no gradient is computed for them, their ``.grad`` is untouched).

Inner loop
----------
Plain SGD (lr ``inner_lr``, default 0.01 as Sun et al. 2019), ``inner_steps`` steps for
meta-training (default 5) and ``eval_steps`` at evaluation (default 10, as MAML). Gradients of the
support loss are taken ONLY w.r.t. the adapted parameters (stock ``higher`` differentiates w.r.t.
every parameter of the module; that is the ``stock_higher`` backend, kept for the benchmark).

* second order (default): inner gradients are built with ``create_graph=True``; the query loss is
  differentiated through the whole adaptation.
* ``first_order=True`` (FOMAML): inner gradients are taken on detached copies without any graph
  (the inner forwards also see detached constants), the adapted parameters are
  ``theta + (constant update)``, so ``d adapted / d theta = I``.
* evaluation: no graph at all beyond the one each inner gradient needs; the query pass runs under
  ``torch.no_grad``.

Outer loop and the meta-loss scaling
------------------------------------
meta-loss = (1/T) * sum over the T tasks of the meta-batch of the query cross-entropy (itself the
mean over the task's query examples), i.e. the paper's eq. (2) divided by T. To release each task's
graph before the next task, :meth:`MAML.meta_step` calls backward per task on ``loss_i / T``,
accumulating ``.grad`` on the outer parameters only (``backward(inputs=outer)``). Distributed
sharding must reproduce it: with T tasks over W workers, each worker backpropagates
``loss_i / T`` (pass ``loss_scale=1/T``, T global) and the gradients are SUM-reduced. The caller
zeroes the gradients and steps its optimiser (:func:`make_outer_optimizer`: Adam lr 1e-3 halved
every 1000 iterations down to 1e-4, paper section 5.4).

BatchNorm
---------
* ``bn="transductive"`` (default, as MAML / higher / learn2learn): every forward inside a task
  normalises with the statistics of its own batch (support batch in the inner loop, query batch in
  the query pass). The running statistics are NOT touched: for the duration of the call each
  BatchNorm module is put in training mode with ``track_running_stats=False`` (then PyTorch passes
  no running buffers to ``F.batch_norm`` and does not increment ``num_batches_tracked``); the
  modules' ``training`` / ``track_running_stats`` flags are restored afterwards.
* ``bn="frozen"``: BatchNorm in eval mode, normalising with the pretrained running statistics
  (left unchanged as well).

Backends (same meta-gradients; float64 agrees to ~1e-14, float32 to ~1e-3 relative with ReLU)
------------------------------------------------------------------------------------------------
``autocast`` (bf16 / fp16, meant for CUDA) applies to every forward of every backend (benchmarked
with ``"func"`` and ``"vmap"``); parameters and the meta-gradient stay in their dtype. CPU bf16 works in torch 2.14 too: on the tiny
test models it moves the meta-gradient by ~10% relative (cosine ~0.99) to float32, as much as it
moves a plain gradient (BatchNorm with batch statistics makes parameter gradients sums with heavy
cancellation).

* ``"func"`` (default): :func:`inner_loop` with :func:`torch.func.functional_call`, tasks one by
  one (each task's graph is released by its backward before the next task).
* ``"vmap"``: the T tasks of the meta-batch in ONE batched computation: their tensors are stacked
  (tasks of unequal shapes are a :class:`UserError`: use ``"func"``) and one task's meta-loss,
  :func:`inner_loop_functorch` (inner gradients by :func:`torch.func.grad`, forwards by
  ``functional_call``) then the query cross-entropy, is :func:`torch.func.vmap`-ped over the task
  dimension; a single ``torch.autograd.backward(sum of the T losses * loss_scale, inputs=outer)``
  gives the same meta-gradient as ``"func"`` (second order: the regular autograd graph runs through
  the functorch gradients, no ``create_graph`` needed; first order as in :func:`inner_loop`).
  Trade-off: fewer, larger kernels (faster on GPUs, where one task does not fill the device), but
  the graphs of ALL T tasks are alive at once: ~T x the memory of ``"func"``. BatchNorm under vmap
  normalises each task with its own batch statistics (checked against the reference). One torch
  2.14 limitation is worked around: ``F.batch_norm`` in training mode with a per-task (batched)
  affine weight, i.e. BatchNorm weight/bias in the INNER loop (plain models), gives wrong second
  derivatives w.r.t. the parameters before it under vmap (1e-2 relative on the meta-gradient of
  the tiny test model, O(1) for a conv + BatchNorm pair; first derivatives are right), so during a vmap meta-step every BatchNorm applies its affine part
  after ``F.batch_norm`` (:func:`metahyper.meta.batchnorm.batchnorm_affine_split`; same forward value). Movement is
  computed from the adapted parameters with :func:`metahyper.models.stage_conv_weights` (no
  ``record`` hooks under vmap). :meth:`MAML.adapt` and :meth:`MAML.evaluate` (one task) use the
  ``"func"`` path.
* ``"higher"``: the ``higher`` library (0.2.1): a monkey-patched module
  (:func:`higher.patch.monkeypatch`) for the forward and a :class:`higher.optim.DifferentiableSGD`
  whose reference parameters are ONLY the adapted ones (so its ``autograd.grad`` covers only them).
* ``"stock_higher"``: ``higher.innerloop_ctx`` as a naive user writes it: SGD over the adapted
  parameters, but higher differentiates the support loss w.r.t. every parameter. Benchmark only.

``higher`` with torch 2.14: the library itself works, but not on our hyper models as is: higher
copies every attribute of a module onto its patched copy with ``setattr``, which registers the
unregistered shared-hypernetwork reference of a :class:`HyperConv2d` (see
:mod:`metahyper.models.layers`) as an UNPATCHED child and then fails ("'HyperNetwork' object has no
attribute '_param_names'"). :func:`_hypernets_detached` hides the reference while higher patches
the model and :func:`_relink_hypernets` points each patched layer at the patched copy of its
hypernetwork (so fast hypernetwork weights would be honoured too). Also, a patched
module tracking higher grads appends every parameter list it is given to a history; the backends
here build one patched module per task so that history (and the task's graph) is released.

Task threads (``task_threads``, ``"func"`` backend)
--------------------------------------------------
``task_threads=k > 1`` runs the meta-batch on k Python threads: thread ``w`` takes tasks ``w, w+k,
...`` one by one, with ``torch.get_num_threads() // k`` intra-op threads of its own, on a replica
of the model (:func:`_replicas`: new module objects, because ``functional_call``, the BatchNorm
mode and ``record`` set module attributes during a call, but the model's own parameter and buffer
tensors). Each task's meta-gradient is returned by ``torch.autograd.grad`` and the main thread adds
them to ``.grad`` in task order, so results do not depend on thread timing (float32 runs are
bitwise repeatable; against ``task_threads=1`` they differ by kernel rounding only, since ops run
with fewer intra-op threads). Why: on a CPU, one task's small convolutions and the many small
BatchNorm/elementwise ops do not keep all cores busy; k tasks at once do. Cost: k tasks' graphs
are alive at once, so peak memory is ~k x that of ``task_threads=1``. Measured numbers: README,
"Speed" (``tools/bench_meta.py --task-threads 2``). On CUDA use ``"vmap"`` instead (threads would
share one stream). :meth:`MAML.evaluate_tasks` scores episodes the same way.

Memory format and the BatchNorm and convolution double backwards (``"func"`` backend)
-----------------------------------------------------------------------------------
``channels_last`` (default ``None``: on when the model is on a CPU) hands the task's images to the
model in ``torch.channels_last``; every activation follows (convolutions keep their input's
format). oneDNN's CPU convolutions work in that layout, so it saves the two layout conversions
around each NCHW convolution (measured: README, "Speed"). The 4-D parameters (conv weights,
embeddings, hypernetwork filters) are bound in the forwards as differentiable channels_last copies,
made once per task (:meth:`MAML._in_format`), so that generated weights come out channels_last and
no convolution converts its weight on each call (1.02-1.05x on the meta-step). It is off by default
on CUDA (not measured there). Every BatchNorm that normalises with batch statistics runs through
:func:`metahyper.meta.batchnorm.batch_norm_train` during the call: the same kernels forward and
backward, but a double backward of our own, which the second-order meta-gradient runs once per
BatchNorm and inner step (forward + backward + double backward of a [25, 32, 32, 32] BatchNorm on 2
cores, ``tools/bench_double_backward.py``: 16.7 -> 6.9 ms in NCHW, 27.9 -> 5.5 ms in
channels_last, where PyTorch's falls back to NCHW tensors and strided sums). In the second-order
inner loop (the one place where a convolution's backward is differentiated again), every
convolution runs through
:func:`metahyper.meta.convolution.conv2d_train`, whose double backward computes the weight term
with oneDNN's backward-weights kernel instead of PyTorch's image-sized batch-transposed
convolution (``tools/bench_double_backward.py --layers conv``: 1.1-1.3x per convolution in
channels_last; the query pass, first order, evaluation and autocast keep ``F.conv2d``, where it
would only add Python overhead; so does CUDA, where it is not measured). All of these change rounding only (float64: equal to ~1e-14).

``torch.compile`` is not used: on a CPU it gave no gain in first order (483 against 474 ms per
task, after a 44 s compile) and cannot run second order, whose inner gradients are differentiated
again (AOTAutograd has no double backward; torch 2.14; README, "Speed").

CPU heap
--------
On a CPU, every task allocates and frees its graph (hundreds of MB). With glibc's default
thresholds the freed memory goes back to the OS after each task and comes back through page faults
in the next one (about 75 000 per 1-shot meta-step). ``retain_heap=True`` (the default; the
command line does the same) calls :func:`metahyper.heap.retain_heap` once per process when the
model is on a CPU: the heap keeps that memory for the next task (README, "Speed"). The process then
keeps its peak heap resident; ``retain_heap=False`` or ``METAHYPER_HEAP=system`` leaves malloc as
it is.

Generated weights
-----------------
A hyper layer's weight ``W = conv2d(E, H)`` is generated at each forward, because the inner loop
adapts E. Where it adapts neither E nor H (classifier-only adaptation; the frozen embeddings of a
compressed model, section 5.3, under a hypernetwork that does not adapt), W is the same in every
inner step and in the query pass: backend ``"func"`` generates it once per task and reuses it
(:meth:`MAML._generated_once`), so its gradient also reaches E and H through one hypernetwork
backward instead of one per forward.

Weight movement (section 5.4, Figure 4)
---------------------------------------
For each task and each 3x3 conv of the residual stages (the layers of
:func:`metahyper.models.stage_conv_weights`: the generated weight of a hyper layer, the raw weight of
a plain conv), ``||W(adapted) - W(initial)||_2`` (Frobenius), averaged over the tasks of the
meta-batch, computed without graph. Generated weights are not generated again for this: each hyper
layer's ``record`` hook keeps the (detached) weight of the task's first forward and of its query
forward (``"vmap"``: regenerated from the adapted parameters, without graph). Layers whose
weight does not depend on an adapted parameter move 0.0.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metahyper import heap
from metahyper.errors import UserError
from metahyper.meta.batchnorm import BN_MODES, batchnorm_affine_split, batchnorm_double_backward, batchnorm_mode
from metahyper.meta.convolution import conv_double_backward
from metahyper.meta.patching import instance_methods
from metahyper.models.groups import GROUPS, group_of, stage_conv_weights
from metahyper.models.layers import HyperConv2d

BACKENDS = ("func", "vmap", "higher", "stock_higher")
HYPER_INNER = ("embeddings", "classifier")
HYPER_OUTER = ("hypernetworks", "classifier", "backbone")
PLAIN_INNER = ("backbone", "classifier")
PLAIN_OUTER = ("backbone", "classifier")

LossFn = Callable[[Tensor, Tensor], Tensor]


class Task(Protocol):
    """What :meth:`MAML.meta_step` needs of a task (e.g. a dataclass from metahyper.data)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor


@dataclass
class MetaStepResult:
    """Result of one meta-step: means over the tasks of the meta-batch."""

    loss: float  # the meta-loss: mean over the tasks of the query cross-entropy
    accuracy: float  # mean query accuracy after adaptation
    movement: dict[str, float] = field(default_factory=dict)  # layer path -> mean ||W' - W||
    num_tasks: int = 0


# --------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------


def _parse_groups(groups: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        groups = [g for g in groups.replace(" ", "").split(",") if g]
    groups = tuple(dict.fromkeys(groups))  # unique, in order
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise UserError(f"unknown {what} parameter group(s) {unknown}; choose from {', '.join(GROUPS)}")
    if not groups:
        raise UserError(f"no {what} parameter groups given; name at least one of {', '.join(GROUPS)}")
    return groups


def default_groups(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inner, outer) default groups: Algorithm 2 for hyper models, Algorithm 1 for plain ones."""
    config = getattr(model, "config", None)
    is_hyper = config.is_hyper if config is not None else any(isinstance(m, HyperConv2d) for m in model.modules())
    return (HYPER_INNER, HYPER_OUTER) if is_hyper else (PLAIN_INNER, PLAIN_OUTER)


def resolve_groups(
    model: nn.Module,
    inner_groups: str | Sequence[str] | None = None,
    outer_groups: str | Sequence[str] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Validate group names and return ``(inner_groups, outer_groups, inner_names, outer_names)``,
    the names in ``model.named_parameters()`` order. Raises :class:`UserError` on unknown groups
    or on a group with no trainable parameter in this model (e.g. ``embeddings`` of a plain or a
    compressed network)."""
    d_inner, d_outer = default_groups(model)
    inner = _parse_groups(inner_groups, "inner") or d_inner
    outer = _parse_groups(outer_groups, "outer") or d_outer
    present = {group_of(n) for n, p in model.named_parameters() if p.requires_grad}
    kind = "hyper" if d_inner == HYPER_INNER else "plain"
    for what, groups in (("inner", inner), ("outer", outer)):
        missing = [g for g in groups if g not in present]
        if missing:
            raise UserError(
                f"{what} group(s) {missing} have no trainable parameters in this {kind} model; "
                f"use groups among {sorted(present)} (defaults: inner {','.join(d_inner)}, outer {','.join(d_outer)})"
            )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    inner_names = tuple(n for n in names if group_of(n) in inner)
    outer_names = tuple(n for n in names if group_of(n) in outer)
    return inner, outer, inner_names, outer_names


# --------------------------------------------------------------------------------------------
# The functional primitive
# --------------------------------------------------------------------------------------------


def _first_order_result(params: Mapping[str, Tensor], final: Mapping[str, Tensor], steps: int) -> dict[str, Tensor]:
    """First-order MAML's adapted parameters: ``p + (final - p)`` with the difference a constant
    (identity Jacobian w.r.t. ``p``); fully detached where ``p`` does not require grad (evaluation)."""
    out = {}
    for n, p in params.items():
        c = final[n].detach()
        out[n] = p + (c - p.detach()) if (p.requires_grad and steps) else (c if not p.requires_grad else p)
    return out


def inner_loop(
    model: nn.Module,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    constants: Mapping[str, Tensor] | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, Tensor]:
    """Adapt ``params`` by ``steps`` SGD steps on ``loss_fn(model(support_x), support_y)``.

    ``params`` maps parameter names to their starting tensors (each must require grad, or be
    turned into a leaf that does); gradients are taken w.r.t. these ONLY. The forward is
    ``functional_call(model, {**constants, **current})``: names in neither mapping use the model's
    own tensors (and keep their graph). Second order (default): ``create_graph=True``, the result
    is differentiable w.r.t. everything the forwards used. ``first_order=True``: gradients on
    detached copies, no graph; the result is ``params + constant`` (identity Jacobian), or fully
    detached where a starting tensor does not require grad (evaluation).
    """
    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")
    constants = dict(constants or {})
    if first_order:
        current = {n: p.detach().requires_grad_() for n, p in params.items()}
        for _ in range(steps):
            loss = loss_fn(functional_call(model, {**constants, **current}, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(current.values()))
            with torch.no_grad():
                current = {n: torch.add(p, g, alpha=-lr).requires_grad_() for (n, p), g in zip(current.items(), grads)}
        return _first_order_result(params, current, steps)
    current = {n: (p if p.requires_grad else p.detach().requires_grad_()) for n, p in params.items()}
    for _ in range(steps):
        loss = loss_fn(functional_call(model, {**constants, **current}, (support_x,)), support_y)
        grads = torch.autograd.grad(loss, list(current.values()), create_graph=True)
        current = {n: torch.add(p, g, alpha=-lr) for (n, p), g in zip(current.items(), grads)}
    return current


def inner_loop_functorch(
    model: nn.Module,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    constants: Mapping[str, Tensor] | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> dict[str, Tensor]:
    """:func:`inner_loop` with :func:`torch.func.grad` for the inner gradients (same contract), so
    that it can run under :func:`torch.func.vmap` (the ``vmap`` backend vmaps it over the tasks).

    ``torch.func.grad`` differentiates w.r.t. ``params`` only; the regular autograd graph through
    each step (second order) is kept by functorch without ``create_graph``: the outer
    ``backward`` differentiates through the gradient computations. First order: the inner
    gradients are taken on detached tensors and constants; the result is ``params + constant``."""
    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")
    constants = dict(constants or {})

    def support_loss(current: dict[str, Tensor]) -> Tensor:
        return loss_fn(functional_call(model, {**constants, **current}, (support_x,)), support_y)

    step_grads = torch.func.grad(support_loss)
    if first_order:
        current = {n: p.detach() for n, p in params.items()}
        for _ in range(steps):
            grads = step_grads(current)
            current = {n: torch.add(p, grads[n], alpha=-lr).detach() for n, p in current.items()}
        return _first_order_result(params, current, steps)
    current = dict(params)
    for _ in range(steps):
        grads = step_grads(current)
        current = {n: torch.add(p, grads[n], alpha=-lr) for n, p in current.items()}
    return current


# --------------------------------------------------------------------------------------------
# higher backends
# --------------------------------------------------------------------------------------------


@contextmanager
def _hypernets_detached(model: nn.Module) -> Iterator[None]:
    """Hide each HyperConv2d's unregistered ``hypernet`` reference while higher patches the model
    (higher copies attributes with ``setattr``, which would register the ORIGINAL hypernetwork as
    a child of the patched layer and then fail: "'HyperNetwork' object has no attribute
    '_param_names'"). Restored on exit."""
    layers = [m for m in model.modules() if isinstance(m, HyperConv2d)]
    hidden = [m.__dict__.pop("hypernet") for m in layers]
    try:
        yield
    finally:
        for m, h in zip(layers, hidden):
            m.__dict__["hypernet"] = h


def _relink_hypernets(fmodel: nn.Module, model: nn.Module) -> None:
    """Point every patched HyperConv2d at the patched copy of its (shared) hypernetwork."""
    index = {id(h): i for i, h in enumerate(getattr(model, "hypernets", []))}
    for path, module in model.named_modules():
        if isinstance(module, HyperConv2d):
            patched = fmodel.get_submodule(path)
            object.__setattr__(patched, "hypernet", fmodel.hypernets[index[id(module.hypernet)]])


def _higher_forward(model: nn.Module, fmodel: nn.Module, names: Sequence[str], values: Mapping[str, Tensor], x: Tensor) -> Tensor:
    own = dict(model.named_parameters())
    return fmodel(x, params=[values[n] if n in values else own[n] for n in names])


def inner_loop_higher(
    model: nn.Module,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    constants: Mapping[str, Tensor] | None = None,
    loss_fn: LossFn = F.cross_entropy,
    fmodel: nn.Module | None = None,
) -> dict[str, Tensor]:
    """:func:`inner_loop` with ``higher``: same contract, a DifferentiableSGD over ``params`` only."""
    import higher

    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")
    names = [n for n, _ in model.named_parameters()]
    fixed = dict(constants or {})
    if fmodel is None:
        fmodel = make_patched(model)
    keys = list(params)
    start = [params[n] if (params[n].requires_grad and not first_order) else params[n].detach().requires_grad_() for n in keys]
    leaves = [s if s.is_leaf else s.detach().requires_grad_() for s in start]  # torch.optim wants leaves
    diffopt = higher.optim.get_diff_optim(
        torch.optim.SGD(leaves, lr=lr), leaves, fmodel=None, track_higher_grads=not first_order
    )
    current = start
    for _ in range(steps):
        loss = loss_fn(_higher_forward(model, fmodel, names, {**fixed, **dict(zip(keys, current))}, support_x), support_y)
        current = diffopt.step(loss, params=current)
    if not first_order:
        return dict(zip(keys, current))
    return _first_order_result(params, dict(zip(keys, current)), steps)


def make_patched(model: nn.Module) -> nn.Module:
    """A higher monkey-patched view of ``model`` (not tracking its own fast-weight history)."""
    import higher

    with _hypernets_detached(model):
        fmodel = higher.patch.monkeypatch(model, copy_initial_weights=False, track_higher_grads=False)
    _relink_hypernets(fmodel, model)
    return fmodel


# --------------------------------------------------------------------------------------------
# Optimiser
# --------------------------------------------------------------------------------------------


def make_outer_optimizer(
    model: nn.Module,
    outer_groups: str | Sequence[str] | None = None,
    lr: float = 1e-3,
    halve_every: int = 1000,
    min_lr: float = 1e-4,
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """Adam over the outer groups, lr halved every ``halve_every`` scheduler steps (call
    ``scheduler.step()`` once per meta-iteration) down to ``min_lr`` (paper section 5.4)."""
    if lr <= 0 or min_lr <= 0 or halve_every < 1:
        raise UserError(f"need lr > 0, min_lr > 0, halve_every >= 1; got {lr}, {min_lr}, {halve_every}")
    _, _, _, outer_names = resolve_groups(model, None, outer_groups)
    named = dict(model.named_parameters())
    opt = torch.optim.Adam([named[n] for n in outer_names], lr=lr)
    floor = min(1.0, min_lr / lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: max(0.5 ** (it // halve_every), floor))
    return opt, sched


# --------------------------------------------------------------------------------------------
# The class
# --------------------------------------------------------------------------------------------


def _task_tensors(task: Any, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    try:
        return task.support_x, task.support_y, task.query_x, task.query_y
    except AttributeError as e:
        raise UserError(f"task {i} has no {e.name!r}; tasks need support_x, support_y, query_x, query_y") from None


def _stack_tasks(tasks: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """support_x, support_y, query_x, query_y of every task stacked on a new first dimension (the
    ``vmap`` backend). Tasks of unequal shapes are a :class:`UserError`."""
    tensors = [_task_tensors(t, i) for i, t in enumerate(tasks)]
    names = ("support_x", "support_y", "query_x", "query_y")
    for k, name in enumerate(names):
        shapes = {tuple(t[k].shape) for t in tensors}
        if len(shapes) > 1:
            raise UserError(
                f"backend 'vmap' needs tasks of equal shapes, but {name} has shapes {sorted(shapes)} across the "
                "meta-batch; use backend='func' (tasks one by one) for tasks of unequal sizes"
            )
    return tuple(torch.stack([t[k] for t in tensors]) for k in range(4))  # type: ignore[return-value]


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(1) == y).float().mean().item()


class MAML:
    """MAML over named parameter groups (see the module docstring for every choice).

    ``maml.meta_step(tasks)`` accumulates the meta-gradient in ``.grad`` of the outer parameters;
    the caller zeroes gradients before and steps its optimiser after. Every flag given to the
    constructor can be overridden per call where the method has the keyword.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        inner_groups: str | Sequence[str] | None = None,
        outer_groups: str | Sequence[str] | None = None,
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        eval_steps: int = 10,
        first_order: bool = False,
        bn: str = "transductive",
        backend: str = "func",
        movement: bool = True,
        autocast: torch.dtype | None = None,
        task_threads: int = 1,
        channels_last: bool | None = None,
        retain_heap: bool = True,
    ) -> None:
        _check_task_threads(task_threads, backend)
        if channels_last and backend != "func":
            raise UserError(f"channels_last needs backend 'func' (got {backend!r}); leave channels_last unset with this backend")
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise UserError(f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast}")
        if backend not in BACKENDS:
            raise UserError(f"unknown MAML backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if bn not in BN_MODES:
            raise UserError(f"unknown batch-norm mode {bn!r}; choose from {', '.join(BN_MODES)}")
        if inner_lr <= 0 or not math.isfinite(inner_lr):
            raise UserError(f"inner learning rate must be a positive number, got {inner_lr}")
        if inner_steps < 0 or eval_steps < 0:
            raise UserError(f"inner steps must be >= 0, got train {inner_steps}, eval {eval_steps}")
        self.model = model
        self.inner_groups, self.outer_groups, self._inner, self._outer = resolve_groups(model, inner_groups, outer_groups)
        self.inner_lr, self.inner_steps, self.eval_steps = inner_lr, inner_steps, eval_steps
        self.first_order, self.bn, self.backend, self.movement = first_order, bn, backend, movement
        self.autocast = autocast
        self.task_threads = task_threads
        self.channels_last = channels_last
        inner = set(self._inner)  # hyper layers whose weight no inner step changes: generated once per task
        self._fixed_layers = frozenset(path for path, deps in _generated_weight_deps(model).items() if not deps & inner)
        if retain_heap and any(p.device.type == "cpu" for p in model.parameters()):
            heap.retain_heap()  # see "CPU heap"

    def _autocast(self):
        """Mixed precision for every forward (and so its backward) when ``autocast`` is set: meant
        for CUDA (bf16); parameters, gradients and the meta-gradient stay in their own dtype."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(next(self.model.parameters()).device.type, dtype=self.autocast)

    def _uses_channels_last(self) -> bool:
        """``channels_last`` resolved: ``None`` (auto) means backend ``"func"`` on a CPU."""
        if self.channels_last is not None:
            return self.channels_last and self.backend == "func"
        return self.backend == "func" and next(self.model.parameters()).device.type == "cpu"

    def _images(self, *xs: Tensor) -> tuple[Tensor, ...]:
        """The task's images in the memory format of the meta-step (see "Memory format")."""
        if not self._uses_channels_last():
            return xs
        return tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs)

    @contextmanager
    def _batchnorm(self, module: nn.Module) -> Iterator[None]:
        """The BatchNorm mode on ``module`` and, for backend ``"func"``, our BatchNorm double
        backward (:func:`metahyper.meta.batchnorm.batchnorm_double_backward`)."""
        with batchnorm_mode(module, self.bn), (batchnorm_double_backward(module) if self.backend == "func" else nullcontext()):
            yield

    @contextmanager
    def _generated_once(self, module: nn.Module, grad: bool) -> Iterator[None]:
        """Backend ``"func"``: every hyper layer of ``module`` whose generated weight depends on no
        adapted parameter (classifier-only adaptation; frozen embeddings under a hypernetwork that
        does not adapt) is generated ONCE for the block (one task: its inner loop and query pass)
        and reused by every forward, instead of at each of them; with its graph when ``grad``, so
        its gradient reaches E and H once (see "Generated weights")."""
        if self.backend != "func" or not self._fixed_layers:
            yield
            return
        layers = [m for path, m in module.named_modules() if path in self._fixed_layers]
        fmt = self._in_format()
        with torch.set_grad_enabled(grad):
            weights = {id(m): fmt(m.generated_weight()) for m in layers}
        with instance_methods(layers, "generated_weight", lambda m: (lambda: weights[id(m)])):
            yield

    @property
    def inner_params(self) -> tuple[str, ...]:
        """Names of the parameters adapted in the inner loop."""
        return self._inner

    @property
    def outer_params(self) -> tuple[str, ...]:
        """Names of the parameters that receive the meta-gradient."""
        return self._outer

    # -- pieces ------------------------------------------------------------------------------

    def _start(self, mode: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(starting inner params, the other parameters bound in the inner forwards) for mode
        'second' | 'first' | 'eval'. Inner params that are also outer start from the Parameter
        itself (graph kept) in training; inner-only ones start from detached leaves (no gradient
        flows to them). The inner forwards see detached constants for every other parameter, except
        outer ones in second order (their graph is needed: the model's own, or a differentiable
        channels_last copy, see :meth:`_in_format`)."""
        outer = set(self._outer)
        fmt = self._in_format()
        start, constants = {}, {}
        for n, p in self.model.named_parameters():
            if n in self._inner:
                if mode != "eval" and n in outer:
                    start[n] = fmt(p)
                else:
                    start[n] = fmt(p.detach()).requires_grad_(mode == "second")
            elif mode != "second" or n not in outer:
                constants[n] = fmt(p.detach())
            elif (formatted := fmt(p)) is not p:
                constants[n] = formatted
        return start, constants

    def _in_format(self) -> Callable[[Tensor], Tensor]:
        """The parameters' format in the meta-step's forwards: with channels_last on, 4-D ones
        (conv weights, embeddings, hypernetwork filters) as differentiable channels_last copies,
        made once per task, so that no convolution converts its weight on each call (a generated
        weight then comes out channels_last too); identity otherwise (see "Memory format")."""
        if not self._uses_channels_last():
            return lambda t: t
        return lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    def _adapt(
        self, x: Tensor, y: Tensor, steps: int, mode: str, fmodel: nn.Module | None = None, module: nn.Module | None = None
    ) -> dict[str, Tensor]:
        """mode: 'second' | 'first' | 'eval'. BN mode must already be set. ``module``: the model or
        one of its replicas (:func:`_replicas`; same parameter objects), default the model."""
        start, constants = self._start(mode)
        kwargs = dict(lr=self.inner_lr, steps=steps, first_order=(mode != "second"), constants=constants)
        if fmodel is None:  # func, vmap (one task: adapt / evaluate)
            module = self.model if module is None else module
            own_conv = (mode == "second" and self.backend == "func" and self.autocast is None
                        and x.device.type == "cpu")  # see "Memory format"
            with conv_double_backward(module) if own_conv else nullcontext():
                return inner_loop(module, start, x, y, **kwargs)
        return inner_loop_higher(self.model, start, x, y, fmodel=fmodel, **kwargs)

    def _forward(
        self, params: Mapping[str, Tensor], x: Tensor, fmodel: nn.Module | None = None, module: nn.Module | None = None
    ) -> Tensor:
        outer = set(self._outer)
        fmt = self._in_format()
        constants = {}
        for n, p in self.model.named_parameters():
            if n in params:
                continue
            if n not in outer:
                constants[n] = fmt(p.detach())
            elif (formatted := fmt(p)) is not p:  # outer: the model's own, or a channels_last copy (graph kept)
                constants[n] = formatted
        values = {**constants, **params}
        if fmodel is None:
            return functional_call(self.model if module is None else module, values, (x,))
        return _higher_forward(self.model, fmodel, [n for n, _ in self.model.named_parameters()], values, x)

    # -- public API ----------------------------------------------------------------------------

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        create_graph: bool | None = None,
    ) -> dict[str, Tensor]:
        """Adapted inner parameters (name -> tensor) after ``steps`` (default ``inner_steps``) SGD
        steps on the support set. ``create_graph`` (default: grad mode on) keeps the graph to the
        outer parameters (second order, or first order when ``first_order``); ``False`` returns
        detached tensors (evaluation). Uses the BatchNorm mode of the instance."""
        steps = self.inner_steps if steps is None else steps
        first_order = self.first_order if first_order is None else first_order
        create_graph = torch.is_grad_enabled() if create_graph is None else create_graph
        mode = "eval" if not create_graph else ("first" if first_order else "second")
        (support_x,) = self._images(support_x)
        with self._batchnorm(self.model), torch.enable_grad(), self._autocast(), self._generated_once(self.model, create_graph):
            fmodel = make_patched(self.model) if self.backend in ("higher", "stock_higher") else None
            return self._adapt(support_x, support_y, steps, mode, fmodel)

    def meta_step(
        self,
        tasks: Iterable[Task],
        *,
        first_order: bool | None = None,
        steps: int | None = None,
        loss_scale: float | None = None,
        movement: bool | None = None,
        task_threads: int | None = None,
    ) -> MetaStepResult:
        """One meta-batch: adapt on each task's support set, backpropagate ``query_loss *
        loss_scale`` (default ``1 / len(tasks)``) per task into ``.grad`` of the outer parameters.
        Returns mean query loss, mean query accuracy and mean per-layer weight movement.

        ``task_threads`` (default: the constructor's, 1) > 1 runs that many tasks at once in
        threads (``"func"`` backend; see the module docstring, "Task threads")."""
        tasks = list(tasks)
        if not tasks:
            raise UserError("meta_step got no tasks; the meta-batch size must be >= 1")
        steps = self.inner_steps if steps is None else steps
        first_order = self.first_order if first_order is None else first_order
        movement = self.movement if movement is None else movement
        task_threads = self.task_threads if task_threads is None else task_threads
        _check_task_threads(task_threads, self.backend)
        scale = 1.0 / len(tasks) if loss_scale is None else loss_scale
        if self.backend == "vmap":
            return self._vmap_meta_step(tasks, steps, first_order, scale, movement)
        layers = list(stage_conv_weights(self.model)) if movement else []
        moved = _layers_depending_on(self.model, layers, self._inner)
        named = dict(self.model.named_parameters())
        outer_list = [named[n] for n in self._outer]
        workers = min(task_threads, len(tasks))
        step = partial(self._task_step, steps=steps, first_order=first_order, scale=scale, moved=moved, named=named,
                       outer_list=outer_list, keep_grads=workers > 1)
        if workers == 1:
            with self._task_context(self.model, moved) as captures:
                results = [step(self.model, captures, i, task) for i, task in enumerate(tasks)]
        else:
            def work(module: nn.Module, indices: Sequence[int]) -> list[_TaskResult]:
                with self._task_context(module, moved) as captures:
                    return [step(module, captures, i, tasks[i]) for i in indices]

            results = _on_threads(self.model, len(tasks), workers, work)
        moves = {k: 0.0 for k in layers}
        for r in results:  # task order: the same sums whatever the number of threads
            for k, v in r.moves.items():
                moves[k] += v
            for p, g in zip(outer_list, r.grads or ()):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad.add_(g)
        n = len(tasks)
        return MetaStepResult(
            sum(r.loss for r in results) / n, sum(r.accuracy for r in results) / n, {k: v / n for k, v in moves.items()}, n
        )

    @contextmanager
    def _task_context(self, module: nn.Module, moved: Sequence[str]) -> Iterator[dict[str, _FirstLast]]:
        """What every task of a meta-step runs under, on ``module`` (the model or a replica): the
        BatchNorm mode, grad mode, autocast (all three thread-local or per module), and a
        :class:`_FirstLast` record on each moved hyper layer (yielded by path; restored on exit)."""
        hyper = {path: m for path, m in module.named_modules() if isinstance(m, HyperConv2d)}
        captures = {path: _FirstLast() for path in moved if path in hyper}
        saved = {path: hyper[path].record for path in captures}
        try:
            for path, capture in captures.items():  # HyperConv2d hands each generated weight to .record
                hyper[path].record = capture
            with self._batchnorm(module), torch.enable_grad(), self._autocast():
                yield captures
        finally:
            for path, record in saved.items():
                hyper[path].record = record

    def _task_step(
        self, module: nn.Module, captures: Mapping[str, _FirstLast], i: int, task: Task, *,
        steps: int, first_order: bool, scale: float, moved: Sequence[str], named: Mapping[str, Tensor],
        outer_list: Sequence[Tensor], keep_grads: bool,
    ) -> _TaskResult:
        """One task of a meta-step on ``module``: adapt, query loss, backward of ``loss * scale``
        into ``.grad`` of ``outer_list`` (the outer parameters), or (``keep_grads``) returned as
        tensors instead. ``named``: the model's parameters by name."""
        sx, sy, qx, qy = _task_tensors(task, i)
        sx, qx = self._images(sx, qx)
        for capture in captures.values():
            capture.reset()
        grads = None
        if self.backend == "stock_higher":
            loss, acc, adapted = self._stock_higher_task(sx, sy, qx, qy, steps, first_order, scale)
        else:
            fmodel = make_patched(module) if self.backend == "higher" else None
            with self._generated_once(module, grad=True):
                adapted = self._adapt(sx, sy, steps, "first" if first_order else "second", fmodel, module)
                logits = self._forward(adapted, qx, fmodel, module)
            loss_t = F.cross_entropy(logits, qy)
            if keep_grads:
                grads = torch.autograd.grad(loss_t * scale, outer_list, allow_unused=True)
            else:
                torch.autograd.backward(loss_t * scale, inputs=outer_list)
            loss, acc = loss_t.item(), _accuracy(logits.detach(), qy)
            del logits, loss_t, fmodel
        moves = {}
        with torch.no_grad():
            for k in moved:
                if k in captures:  # first generated weight (W before) vs last (query pass)
                    delta = captures[k].last - captures[k].first
                else:  # plain conv: its raw weight
                    delta = adapted[f"{k}.weight"].detach() - named[f"{k}.weight"].detach()
                moves[k] = torch.linalg.vector_norm(delta).item()
        return _TaskResult(loss, acc, moves, grads)

    def _vmap_meta_step(self, tasks: list, steps: int, first_order: bool, scale: float, movement: bool) -> MetaStepResult:
        """The ``vmap`` backend: every task of the meta-batch at once (see the module docstring)."""
        stacked = _stack_tasks(tasks)
        named = dict(self.model.named_parameters())
        outer = set(self._outer)
        outer_list = [named[n] for n in self._outer]
        hyper = [m for m in self.model.modules() if isinstance(m, HyperConv2d)]
        saved_records = [m.record for m in hyper]
        mode = "first" if first_order else "second"
        try:
            for m in hyper:  # a batched weight must not leak out of vmap through .record
                m.record = None
            with batchnorm_mode(self.model, self.bn), batchnorm_affine_split(self.model), torch.enable_grad(), self._autocast():
                start, constants = self._start(mode)
                query_constants = {n: p.detach() for n, p in named.items() if n not in outer and n not in start}

                def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
                    adapted = inner_loop_functorch(
                        self.model, start, sx, sy, lr=self.inner_lr, steps=steps, first_order=first_order, constants=constants
                    )
                    logits = functional_call(self.model, {**query_constants, **adapted}, (qx,))
                    return F.cross_entropy(logits, qy), logits, adapted

                losses, logits, adapted = vmap(one_task)(*stacked)
                torch.autograd.backward(losses.sum() * scale, inputs=outer_list)
        finally:
            for m, record in zip(hyper, saved_records):
                m.record = record
        n = len(tasks)
        with torch.no_grad():
            accuracy = (logits.detach().argmax(-1) == stacked[3]).float().mean(1).mean().item()
            moves: dict[str, float] = {}
            if movement:
                layers = stage_conv_weights(self.model)
                moved = set(_layers_depending_on(self.model, list(layers), self._inner))
                fast = {k: a.detach() for k, a in adapted.items()}
                for path, weight_fn in layers.items():
                    if path not in moved:
                        moves[path] = 0.0
                        continue
                    w0 = weight_fn({})
                    moves[path] = sum(
                        torch.linalg.vector_norm(weight_fn({k: a[i] for k, a in fast.items()}) - w0).item() for i in range(n)
                    ) / n
        return MetaStepResult(losses.detach().mean().item(), accuracy, moves, n)

    def _stock_higher_task(self, sx, sy, qx, qy, steps, first_order, scale):
        """``higher.innerloop_ctx`` as in higher's MAML example: an SGD over the adapted parameters,
        but higher's differentiable optimiser differentiates the support loss w.r.t. EVERY
        parameter of the patched module (and copies all of them per task)."""
        import higher

        named = dict(self.model.named_parameters())
        opt = torch.optim.SGD([named[n] for n in self._inner], lr=self.inner_lr)
        with _hypernets_detached(self.model):
            ctx = higher.innerloop_ctx(self.model, opt, copy_initial_weights=False, track_higher_grads=not first_order)
            fmodel, diffopt = ctx.__enter__()
        try:
            _relink_hypernets(fmodel, self.model)
            for _ in range(steps):
                diffopt.step(F.cross_entropy(fmodel(sx), sy))
            logits = fmodel(qx)
            loss = F.cross_entropy(logits, qy)
            fast = dict(zip(named, fmodel.parameters()))
            if first_order:  # fast weights are detached leaves: the FOMAML gradient by hand
                grads = torch.autograd.grad(loss * scale, [fast[n] for n in self._outer], allow_unused=True)
                for n, g in zip(self._outer, grads):
                    if g is not None:
                        p = named[n]
                        p.grad = g.detach().clone() if p.grad is None else p.grad.add_(g)
            else:
                torch.autograd.backward(loss * scale, inputs=[named[n] for n in self._outer])
            adapted = {n: fast[n].detach() for n in self._inner}
            return loss.item(), _accuracy(logits.detach(), qy), adapted
        finally:
            ctx.__exit__(None, None, None)

    def evaluate(self, task: Task, *, steps: int | None = None) -> float:
        """Query accuracy after ``steps`` (default ``eval_steps``) inner steps; no outer graph,
        no gradient touched, BatchNorm statistics untouched."""
        return self._evaluate(self.model, task, 0, self.eval_steps if steps is None else steps)

    def evaluate_tasks(self, tasks: Iterable[Task], *, steps: int | None = None, task_threads: int | None = None) -> list[float]:
        """:meth:`evaluate` of each task, in order. ``task_threads`` (default: the constructor's)
        > 1 scores that many tasks at once on threads, as :meth:`meta_step` does (``"func"``)."""
        tasks = list(tasks)
        task_threads = self.task_threads if task_threads is None else task_threads
        _check_task_threads(task_threads, self.backend)
        steps = self.eval_steps if steps is None else steps
        workers = min(task_threads, len(tasks))
        if workers <= 1:
            return [self._evaluate(self.model, t, i, steps) for i, t in enumerate(tasks)]
        return _on_threads(self.model, len(tasks), workers,
                           lambda module, indices: [self._evaluate(module, tasks[i], i, steps) for i in indices])

    def _evaluate(self, module: nn.Module, task: Task, i: int, steps: int) -> float:
        sx, sy, qx, qy = _task_tensors(task, i)
        sx, qx = self._images(sx, qx)
        with self._batchnorm(module), self._autocast(), self._generated_once(module, grad=False):
            with torch.enable_grad():
                fmodel = make_patched(module) if self.backend in ("higher", "stock_higher") else None
                adapted = self._adapt(sx, sy, steps, "eval", fmodel, module)
            with torch.no_grad():
                return _accuracy(self._forward(adapted, qx, fmodel, module), qy)


@dataclass
class _TaskResult:
    """One task of a meta-step (see :meth:`MAML._task_step`)."""

    loss: float
    accuracy: float
    moves: dict[str, float]
    grads: tuple[Tensor | None, ...] | None  # per outer parameter, when not accumulated in .grad


def _check_task_threads(task_threads: int, backend: str) -> None:
    if not isinstance(task_threads, int) or task_threads < 1:
        raise UserError(f"task threads must be an integer >= 1, got {task_threads!r}")
    if task_threads > 1 and backend != "func":
        raise UserError(f"task threads > 1 need backend 'func' (got {backend!r}); use task_threads=1 with this backend")


def _replicas(model: nn.Module, n: int) -> list[nn.Module]:
    """``n`` structural copies of ``model`` that share its parameter and buffer OBJECTS: module
    objects (whose attributes ``functional_call``, the BatchNorm mode and ``record`` change for
    the duration of a call) are per replica, every tensor is the model's own."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return [copy.deepcopy(model, memo=dict(shared)) for _ in range(n)]


R = TypeVar("R")


def _on_threads(model: nn.Module, n: int, workers: int, work: Callable[[nn.Module, Sequence[int]], list[R]]) -> list[R]:
    """Items ``0..n-1`` round-robin over ``workers`` threads: thread ``w`` runs ``work(replica_w,
    [w, w + workers, ...])`` with ``get_num_threads() // workers`` intra-op threads of its own, on
    its own replica of ``model`` (:func:`_replicas`). Results in item order."""
    intra = max(1, torch.get_num_threads() // workers)
    replicas = _replicas(model, workers)

    def run(w: int) -> list[tuple[int, R]]:
        torch.set_num_threads(intra)  # this worker thread only
        indices = range(w, n, workers)
        return list(zip(indices, work(replicas[w], indices)))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="maml-task") as pool:
        done = [r for chunk in pool.map(run, range(workers)) for r in chunk]
    return [r for _, r in sorted(done, key=lambda ir: ir[0])]


class _FirstLast:
    """A ``HyperConv2d.record`` that keeps only the first and the last generated weight (detached):
    the weight before adaptation (first support forward) and after it (query forward), so movement
    needs no extra weight generation."""

    def __init__(self) -> None:
        self.first: Tensor | None = None
        self.last: Tensor | None = None

    def reset(self) -> None:
        self.first = self.last = None

    def append(self, weight: Tensor) -> None:
        weight = weight.detach()
        if self.first is None:
            self.first = weight
        self.last = weight


def _generated_weight_deps(model: nn.Module) -> dict[str, set[str]]:
    """Per hyper layer path: the parameter names its generated weight depends on (its embedding,
    unless frozen, and its hypernetwork's parameters)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {path: {names[id(p)] for p in (m.embedding, *m.hypernet.parameters()) if id(p) in names}
            for path, m in model.named_modules() if isinstance(m, HyperConv2d)}


def _layers_depending_on(model: nn.Module, layers: Sequence[str], inner: Sequence[str]) -> list[str]:
    """Stage convs whose weight depends on an adapted parameter (the others move 0.0)."""
    deps = _generated_weight_deps(model)
    inner_set = set(inner)
    return [path for path in layers if (deps[path] if path in deps else {f"{path}.weight"}) & inner_set]
