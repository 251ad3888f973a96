"""The inner loop of MAML (paper section 4, Algorithms 1 and 2): steps on a task's support set.

One functional primitive, :func:`inner_loop`: named parameters in, adapted parameters out. It knows
nothing of the model: the backend hands it ``forward(params, x)`` (e.g. a
:func:`torch.func.functional_call` closure), a gradient function (:func:`autograd_grad`, or
:func:`functorch_grad` to run under :func:`torch.func.vmap`) and an update rule
(:class:`~metahyper.meta.rules.InnerRule`; default plain SGD).

Support chunks (``support_chunk=N``): each step's support gradient is accumulated over chunks of
N images (the last one smaller), each chunk's loss weighted by its share of the images: the same
gradient when ``loss_fn`` is a mean over the images and the forward treats images independently
(no batch statistics: BatchNorm on running statistics). Without graph (first order, evaluation,
the forward of a checkpointed segment) only one chunk's activations are alive at a time; with
graph (second order) every chunk's graph is kept until the meta-backward, as without chunks,
unless the inner loop is checkpointed: a segment's backward then recomputes the steps' values and
pulls the cotangent back one step and one chunk's graph at a time
(:meth:`_SegmentSpec.backward_by_chunks`), one more support pass per step.

Checkpointing (``inner_checkpoint=N``; Baranchuk et al. 2019, "Memory-efficient MAML", after Chen et al.
2016). Second order keeps every step's graph until the meta-backward, so memory grows linearly
with the steps. With checkpointing the steps run in segments of N, each one :class:`_Segment`:
its forward runs the N steps without graph (values only, as first order does) and keeps nothing
but the segment's starting parameters and rule state; its backward recomputes the N steps from
them WITH graph and backpropagates the incoming cotangent through them to the starting tensors and
to the tensors the forward closes over (``captured``, and the rule's learned parameters). Peak
memory: ``steps / N`` parameter sets plus one segment's graph; time: one more pass of every step
(forward and inner gradient). The meta-gradient is the same: the recomputation runs the same
operations on the same values (inside
``recompute_context()``, which restores what else the forwards depend on, e.g. the kernels a
:class:`~torch.overrides.TorchFunctionMode` chooses; autocast is restored here).
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant) is not used: it gives the same gradients
on plain autograd, but its first pass already recomputes a segment's forwards for each nested
``autograd.grad`` inside it, and that recomputation, stopped early by an exception, failed with the
TorchFunctionMode of :class:`~metahyper.meta.kernels.MetaKernels` entered around it (torch 2.14).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from metahyper.errors import UserError
from metahyper.meta.rules import SGD, InnerRule, Params
from metahyper.models.per_step_bn import at_inner_step, recording_statistics

Forward = Callable[[Mapping[str, Tensor], Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
GradFn = Callable[[Callable[[Params], Tensor], Params, bool], Params]


def autograd_grad(loss_of: Callable[[Params], Tensor], params: Params, create_graph: bool) -> Params:
    """Gradient of ``loss_of(params)`` w.r.t. ``params`` only, by :func:`torch.autograd.grad`;
    with ``create_graph`` the result is differentiable again (second order). Tensors that do not
    require grad are differentiated as fresh leaves."""
    params = {n: p if p.requires_grad else p.detach().requires_grad_() for n, p in params.items()}
    grads = torch.autograd.grad(loss_of(params), list(params.values()), create_graph=create_graph)
    return dict(zip(params, grads))


def functorch_grad(loss_of: Callable[[Params], Tensor], params: Params, create_graph: bool) -> Params:
    """The same gradient by :func:`torch.func.grad`, which composes with :func:`torch.func.vmap`.
    The regular autograd graph runs through it, so ``create_graph`` needs no flag here."""
    return torch.func.grad(loss_of)(params)


class _Segment(torch.autograd.Function):
    """Steps whose graph is recomputed in the backward: ``apply(spec, *start, *captured)`` ->
    the carried tensors after ``spec.count`` steps from ``start`` (``spec.size`` of them).
    ``spec``: ``values(start) -> end`` without graph, ``graph(start) -> end`` with graph,
    ``context()`` entered around the recomputation, ``autocast`` = (device type, enabled, dtype) of
    the forward."""

    @staticmethod
    def forward(ctx: Any, spec: Any, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = spec.size
        ctx.spec, ctx.captured = spec, tensors[n:]
        ctx.save_for_backward(*tensors[:n])
        with torch.enable_grad():
            return tuple(spec.values(tensors[:n]))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *cotangents: Tensor) -> tuple[Tensor | None, ...]:
        spec = ctx.spec
        start = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        captured = [t for t in ctx.captured if t.requires_grad]
        device, enabled, dtype = spec.autocast
        with torch.enable_grad(), torch.autocast(device, enabled=enabled, dtype=dtype), spec.context():
            with recording_statistics(False):  # per-step BatchNorm: the forward recorded them
                if spec.chunked is not None:
                    grads = spec.backward_by_chunks(start, captured, cotangents)
                else:
                    grads = torch.autograd.grad(spec.graph(start), [*start, *captured], cotangents, allow_unused=True)
        by_id = dict(zip(map(id, captured), grads[len(start) :]))
        return (None, *grads[: len(start)], *(by_id.get(id(t)) for t in ctx.captured))


Step = Callable[[Params, Params, int, bool], tuple[Params, Params]]


class _SegmentSpec:
    """What a :class:`_Segment` runs: steps ``first .. first + count - 1`` of ``step`` over the
    parameters ``names`` and the rule's state ``state_names``, carried as one flat tuple."""

    def __init__(
        self,
        names: list[str],
        state_names: list[str],
        first: int,
        count: int,
        step: Step,
        context: Callable[[], AbstractContextManager[Any]],
        autocast: tuple[str, bool, torch.dtype],
        chunked: tuple[InnerRule, GradFn, LossAt] | None = None,
    ) -> None:
        self.names, self.state_names, self.first, self.count = names, state_names, first, count
        self.step, self.context, self.autocast, self.chunked = step, context, autocast, chunked
        self.size = len(names) + len(state_names)

    def _split(self, carried: Sequence[Tensor]) -> tuple[Params, Params]:
        k = len(self.names)
        return dict(zip(self.names, carried[:k])), dict(zip(self.state_names, carried[k:]))

    def _join(self, params: Params, state: Params) -> list[Tensor]:
        return [*(params[n] for n in self.names), *(state[n] for n in self.state_names)]

    def _run(self, start: Sequence[Tensor], create_graph: bool) -> list[Tensor]:
        current, state = self._split(start)
        for i in range(self.first, self.first + self.count):
            current, state = self.step(current, state, i, create_graph)
            if not create_graph:
                current, state = _detached(current), _detached(state)
        return self._join(current, state)

    def values(self, start: Sequence[Tensor]) -> list[Tensor]:
        return self._run([t.detach() for t in start], False)

    def graph(self, start: Sequence[Tensor]) -> list[Tensor]:
        return self._run(start, True)

    def backward_by_chunks(
        self, start: Sequence[Tensor], captured: Sequence[Tensor], cotangents: Sequence[Tensor]
    ) -> list[Tensor | None]:
        """The segment's vector-Jacobian product (w.r.t. ``start`` then ``captured``) with one
        support chunk's graph alive at a time: the steps' values first (no graph), then from the
        last step back, step ``i``'s ``end = rule(p, g, i, state)`` with its gradient ``g`` as an
        independent leaf, whose cotangent ``u`` is pulled back through ``g = sum_c g_c(p)`` chunk
        by chunk (each chunk's gradient recomputed with graph, ``u`` backpropagated through it,
        the graph freed). The same products as :meth:`graph`'s, in another order of summation."""
        rule, grad, loss_at = self.chunked
        k, n, steps = len(self.names), self.size, range(self.first, self.first + self.count)
        values, passes = [t.detach() for t in start], []
        for i in steps:  # each step's entering values and support gradient, without graph
            p, state = self._split(values)
            g = _gradient(grad, loss_at(i), p, False)
            passes.append((values, _detached(g)))
            if i < steps[-1]:
                with torch.no_grad():
                    values = [t.detach() for t in self._join(*rule.step(p, g, i, state))]
        cot = [c if c is not None else torch.zeros_like(t) for c, t in zip(cotangents, start)]
        into_captured: list[Tensor | None] = [None] * len(captured)
        for i, (values, g) in zip(reversed(steps), reversed(passes)):
            carried = [v.requires_grad_() for v in values]
            p, state = self._split(carried)
            g = {m: t.requires_grad_() for m, t in g.items()}  # an independent leaf: its cotangent is u
            end = self._join(*rule.step(p, g, i, state))
            wrt = [*carried, *g.values(), *captured]
            pulled = _vjp(end, wrt, cot)
            cot, u = pulled[:n], pulled[n : n + k]
            _accumulate(into_captured, pulled[n + k :])
            for loss_of in loss_at(i):  # sum_c (d g_c / d p, d g_c / d captured)^T u, one chunk's graph at a time
                chunk_g = grad(loss_of, p, True)
                pulled = _vjp([chunk_g[m] for m in self.names], [*carried[:k], *captured], u)
                cot = [*(a + b for a, b in zip(cot[:k], pulled[:k])), *cot[k:]]
                _accumulate(into_captured, pulled[k:])
        return [*cot, *into_captured]


def _detached(tensors: Mapping[str, Tensor]) -> Params:
    return {n: t.detach() for n, t in tensors.items()}


def _vjp(outputs: Sequence[Tensor], inputs: Sequence[Tensor], cotangents: Sequence[Tensor]) -> list[Tensor]:
    """``(d outputs / d inputs)^T cotangents``, zeros where an input is not reached."""
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad([o for o, _ in pairs], list(inputs), [c for _, c in pairs], allow_unused=True)
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, inputs)]


def _accumulate(total: list[Tensor | None], more: Sequence[Tensor]) -> None:
    for j, g in enumerate(more):
        total[j] = g if total[j] is None else total[j] + g


def _checkpointed(
    step: Step,
    params: Params,
    state: Params,
    steps: int,
    every: int,
    captured: Sequence[Tensor],
    context,
    parts: tuple[InnerRule, GradFn, LossAt],
) -> Params:
    """Second order in segments of ``every`` steps (module docstring), ``parts``: the rule (its
    learned parameters are captured too), gradient function and support loss of ``step``; with the
    support set in chunks each segment's backward holds one chunk's graph at a time
    (:meth:`_SegmentSpec.backward_by_chunks`)."""
    rule, _, loss_at = parts
    captured = [*captured, *(p for p in rule.parameters() if p.requires_grad)]
    chunked = parts if len(loss_at(0)) > 1 else None
    names, state_names = list(params), list(state)
    device = next(iter(params.values())).device.type if params else "cpu"
    autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
    current = [*params.values(), *state.values()]
    for first in range(0, steps, every):
        spec = _SegmentSpec(names, state_names, first, min(every, steps - first), step, context, autocast, chunked)
        current = list(_Segment.apply(spec, *current, *captured))
    return dict(zip(names, current[: len(names)]))


def _first_order(step: Step, params: Mapping[str, Tensor], state: Params, steps: int, every_step: bool) -> list[Params]:
    """FOMAML: the steps on detached tensors, then ``p + (adapted - p).detach()`` (identity
    Jacobian), or the detached adapted tensor where ``p`` does not require grad (evaluation); the
    result after every step (``every_step``) or after the last."""
    out, current, state = [dict(params)], _detached(params), _detached(state)
    for i in range(steps):
        current, state = step(current, state, i, False)
        current, state = _detached(current), _detached(state)
        if every_step or i == steps - 1:
            out.append({n: p + (current[n] - p.detach()) if p.requires_grad else current[n] for n, p in params.items()})
    return out[1:] if steps and every_step else out[-1:]


def _with_graph(step: Callable[[Params, Params, int], tuple[Params, Params]], params: Mapping[str, Tensor],
                state: Params, steps: int) -> list[Params]:  # fmt: skip
    """The parameters after every step of ``step`` (``[params]`` for no step), graph kept."""
    out, current = [dict(params)], dict(params)
    for i in range(steps):
        current, state = step(current, state, i)
        out.append(current)
    return out[1:] if steps else out


LossAt = Callable[[int], list[Callable[[Params], Tensor]]]


def _gradient(grad: GradFn, losses: list[Callable[[Params], Tensor]], params: Params, create_graph: bool) -> Params:
    """The gradient of the sum of ``losses`` (one per support chunk) w.r.t. ``params``, one chunk
    at a time: each chunk's forward and backward are released before the next (without graph)."""
    total = grad(losses[0], params, create_graph)
    for loss_of in losses[1:]:
        grads = grad(loss_of, params, create_graph)
        total = {n: total[n] + grads[n] for n in total}
    return total


def _stepper(rule: InnerRule, grad: GradFn, loss_at: LossAt) -> Step:
    """One inner step: the gradient of step ``i``'s loss ``loss_at(i)`` (with graph or not), then
    ``rule``'s update (with graph only where the gradient has one)."""

    def step(current: Params, state: Params, i: int, create_graph: bool) -> tuple[Params, Params]:
        grads = _gradient(grad, loss_at(i), current, create_graph)
        if create_graph:
            return rule.step(current, grads, i, state)
        with torch.no_grad():
            return rule.step(current, grads, i, state)

    return step


def _support_loss(forward: Forward, loss_fn: LossFn, x: Tensor, y: Tensor, chunk: int = 0) -> LossAt:
    """``loss_at(i)``: the support loss as functions of the parameters whose sum it is, their
    forwards at inner step ``i`` (per-step BatchNorm, :mod:`metahyper.models.per_step_bn`): one
    function, or with ``chunk`` one per ``chunk`` images, each weighted by its share of the images
    (``loss_fn`` is a mean over the images)."""
    n = x.shape[0]
    parts = [(x, y)] if not chunk or chunk >= n else [(x[s : s + chunk], y[s : s + chunk]) for s in range(0, n, chunk)]

    def loss_of_part(i: int, px: Tensor, py: Tensor) -> Callable[[Params], Tensor]:
        def loss_of(current: Params) -> Tensor:
            with at_inner_step(i):
                loss = loss_fn(forward(current, px), py)
            return loss if len(parts) == 1 else loss * (px.shape[0] / n)

        return loss_of

    return lambda i: [loss_of_part(i, px, py) for px, py in parts]


def _learns_through_rule(rule: InnerRule, params: Mapping[str, Tensor], training: bool | None) -> bool:
    """First order with a learned rule in training: its parameters need the graph of the updates
    (the inner gradients stay constants). ``training`` None: training when a parameter requires grad."""
    training = any(p.requires_grad for p in params.values()) if training is None else training
    return training and any(p.requires_grad for p in rule.parameters())


def chunk_size(value: object) -> int:
    """``support_chunk`` of :func:`inner_loop` (an integer >= 0), or a one-line :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"support_chunk must be an integer >= 0 (0: the whole support set at once), got {value!r}")
    return value


def _check(steps: int, inner_checkpoint: int, trajectory: bool, support_chunk: int) -> None:
    if trajectory and inner_checkpoint:
        raise UserError(
            "the parameters after every inner step (a multi-step loss) keep every step's graph: the checkpointed "
            "inner loop cannot hold memory flat with them; drop the multi-step loss or inner_checkpoint"
        )
    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")
    chunk_size(support_chunk)
    if inner_checkpoint < 0:
        raise UserError(
            f"inner-loop checkpoint interval must be >= 0 (0: off, N: every N steps), got {inner_checkpoint}"
        )


def inner_loop(
    forward: Forward,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    rule: InnerRule | None = None,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    loss_fn: LossFn = F.cross_entropy,
    grad: GradFn = autograd_grad,
    inner_checkpoint: int = 0,
    support_chunk: int = 0,
    captured: Sequence[Tensor] = (),
    recompute_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
    trajectory: bool = False,
    training: bool | None = None,
) -> Params | list[Params]:
    """Adapt ``params`` by ``steps`` steps of ``rule`` (default: SGD at rate ``lr``) on
    ``loss_fn(forward(params, support_x), support_y)``; gradients are taken w.r.t. ``params`` only.

    Second order (default): every step keeps its graph; the result is differentiable w.r.t.
    everything ``params``, ``forward`` and the rule's parameters depend on. ``first_order=True``
    (FOMAML): the inner gradients are constants. With a rule without learned parameters the steps
    run on detached tensors without graph and the result is ``p + (adapted - p).detach()``
    (identity Jacobian), or the detached adapted tensor where ``p`` does not require grad
    (evaluation); with learned rule parameters (training) the updates keep their graph, so the
    result is ``p - Σ_k α ∘ g_k`` differentiable w.r.t. ``p`` (identity) and the rule's parameters
    (e.g. ``-Σ_k g_k`` for Meta-SGD's rates). ``training`` tells training (default: some of ``params``
    requires grad; none may, e.g. a zero head on a detached body). UserError for ``steps < 0``.

    ``inner_checkpoint=N > 0`` (second order; first order ignores it): keep only every N-th adapted
    state and recompute the steps between them in the backward (module docstring); same result and
    derivatives (first derivatives: the result is not differentiable twice). Contract: apart from
    ``params`` and the rule's parameters, the forwards may depend on tensors that require grad only
    through ``captured`` (gradients reach nothing else), they must be deterministic (no dropout),
    and ``recompute_context()`` must reproduce whatever else they depend on (kernel choice,
    BatchNorm flags). Raises :class:`UserError` for ``inner_checkpoint < 0``.

    ``support_chunk=N > 0``: each step's support gradient accumulated over chunks of N images
    (module docstring). ``trajectory=True``: the list of the parameters after each step
    (``[params]`` for no step), as the multi-step loss needs (:mod:`metahyper.meta.msl`); not with
    ``inner_checkpoint``. ``steps=0`` returns ``params``."""
    _check(steps, inner_checkpoint, trajectory, support_chunk)
    rule = SGD(params, lr, steps) if rule is None else rule
    loss_at = _support_loss(forward, loss_fn, support_x, support_y, support_chunk)
    step, state = _stepper(rule, grad, loss_at), rule.init_state(params)
    if first_order and _learns_through_rule(rule, params, training):  # constant inner gradients, updates with graph
        done = _with_graph(
            lambda p, s, i: rule.step(p, _gradient(grad, loss_at(i), _detached(p), False), i, s), params, state, steps
        )
    elif first_order:
        done = _first_order(step, params, state, steps, trajectory)
    elif inner_checkpoint:
        parts = (rule, grad, loss_at)
        done = [_checkpointed(step, dict(params), state, steps, inner_checkpoint, captured, recompute_context, parts)]
    else:
        done = _with_graph(lambda p, s, i: step(p, s, i, True), params, state, steps)
    return done if trajectory else done[-1]
