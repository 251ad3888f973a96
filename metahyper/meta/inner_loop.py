"""The inner loop of MAML (paper section 4, Algorithms 1 and 2): SGD on a task's support set.

One functional primitive, :func:`inner_loop`: named parameters in, adapted parameters out. It knows
nothing of the model: the backend hands it ``forward(params, x)`` (e.g. a
:func:`torch.func.functional_call` closure) and a gradient rule (:func:`autograd_grad`, or
:func:`functorch_grad` to run under :func:`torch.func.vmap`).

Checkpointing (``checkpoint=N``; Baranchuk et al. 2019, "Memory-efficient MAML", after Chen et al.
2016). Second order keeps every step's graph until the meta-backward, so memory grows linearly
with the steps. With checkpointing the steps run in segments of N, each one :class:`_Segment`:
its forward runs the N steps without graph (values only, as first order does) and keeps nothing
but the segment's starting parameters; its backward recomputes the N steps from them WITH graph
and backpropagates the incoming cotangent through them to the starting parameters and to the
tensors the forward closes over (``captured``). Peak memory: ``steps / N`` parameter sets plus one
segment's graph; time: one more pass of every step (forward and inner gradient). The meta-gradient
is the same: the recomputation runs the same operations on the same values (inside
``recompute_context()``, which restores what else the forwards depend on, e.g. the kernels a
:class:`~torch.overrides.TorchFunctionMode` chooses; autocast is restored here).
:func:`torch.utils.checkpoint.checkpoint` (non-reentrant) is not used: it gives the same gradients
on plain autograd, but its first pass already recomputes a segment's forwards for each nested
``autograd.grad`` inside it, and that recomputation, stopped early by an exception, failed with the
TorchFunctionMode of :class:`~metahyper.meta.kernels.MetaKernels` entered around it (torch 2.14).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from metahyper.errors import UserError

Params = dict[str, Tensor]
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
    the parameters after ``spec.count`` steps from ``start`` (names ``spec.names``). ``spec``:
    ``values(start) -> end`` without graph, ``graph(start) -> end`` with graph, ``context()``
    entered around the recomputation, ``autocast`` = (device type, enabled, dtype) of the forward."""

    @staticmethod
    def forward(ctx: Any, spec: Any, *tensors: Tensor) -> tuple[Tensor, ...]:
        n = len(spec.names)
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
            end = spec.graph(start)
        grads = torch.autograd.grad(end, [*start, *captured], cotangents, allow_unused=True)
        by_id = dict(zip(map(id, captured), grads[len(start) :]))
        return (None, *grads[: len(start)], *(by_id.get(id(t)) for t in ctx.captured))


class _SegmentSpec:
    """What a :class:`_Segment` runs: ``count`` SGD steps over ``names`` by ``step``."""

    def __init__(
        self,
        names: list[str],
        count: int,
        step: Callable[[Params, bool], Params],
        context: Callable[[], ContextManager[Any]],
        autocast: tuple[str, bool, torch.dtype],
    ) -> None:
        self.names, self.count, self.step, self.context, self.autocast = names, count, step, context, autocast

    def _run(self, start: Sequence[Tensor], create_graph: bool) -> list[Tensor]:
        current = dict(zip(self.names, start))
        for _ in range(self.count):
            current = self.step(current, create_graph)
            current = current if create_graph else {n: t.detach() for n, t in current.items()}
        return [current[n] for n in self.names]

    def values(self, start: Sequence[Tensor]) -> list[Tensor]:
        return self._run([t.detach() for t in start], False)

    def graph(self, start: Sequence[Tensor]) -> list[Tensor]:
        return self._run(start, True)


def inner_loop(
    forward: Forward,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    loss_fn: LossFn = F.cross_entropy,
    grad: GradFn = autograd_grad,
    checkpoint: int = 0,
    captured: Sequence[Tensor] = (),
    recompute_context: Callable[[], ContextManager[Any]] = nullcontext,
) -> Params:
    """Adapt ``params`` by ``steps`` SGD steps (lr ``lr``) on ``loss_fn(forward(params, support_x),
    support_y)``; gradients are taken w.r.t. ``params`` only.

    Second order (default): every step keeps its graph; the result is differentiable w.r.t.
    everything ``params`` and ``forward`` depend on. ``first_order=True`` (FOMAML): the steps run on
    detached tensors without graph and the result is ``p + (adapted - p).detach()`` (identity
    Jacobian), or the detached adapted tensor where ``p`` does not require grad (evaluation).
    ``steps=0`` returns ``params``. Raises :class:`UserError` for ``steps < 0``.

    ``checkpoint=N > 0`` (second order; first order ignores it): keep only every N-th adapted state
    and recompute the steps between them in the backward (module docstring); same result and
    derivatives (first derivatives: the result is not differentiable twice). Contract: apart from
    ``params``, the forwards may depend on tensors that require grad only through ``captured``
    (gradients reach nothing else), they must be deterministic (no dropout), and
    ``recompute_context()`` must reproduce whatever else they depend on (kernel choice, BatchNorm
    flags). Raises :class:`UserError` for ``checkpoint < 0``.
    """
    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")
    if checkpoint < 0:
        raise UserError(f"inner-loop checkpoint interval must be >= 0 (0: off, N: every N steps), got {checkpoint}")

    def loss_of(current: Params) -> Tensor:
        return loss_fn(forward(current, support_x), support_y)

    def step(current: Params, create_graph: bool) -> Params:
        grads = grad(loss_of, current, create_graph)
        return {n: torch.add(p, grads[n], alpha=-lr) for n, p in current.items()}

    if not first_order and not checkpoint:
        current = dict(params)
        for _ in range(steps):
            current = step(current, True)
        return current
    if not first_order:
        names, current = list(params), dict(params)
        device = next(iter(params.values())).device.type if params else "cpu"
        autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        for first in range(0, steps, checkpoint):
            spec = _SegmentSpec(names, min(checkpoint, steps - first), step, recompute_context, autocast)
            current = dict(zip(names, _Segment.apply(spec, *current.values(), *captured)))
        return current
    current = {n: p.detach() for n, p in params.items()}
    for _ in range(steps):
        grads = grad(loss_of, current, False)
        current = {n: torch.add(p, grads[n], alpha=-lr).detach() for n, p in current.items()}
    if not steps:
        return dict(params)
    return {n: p + (current[n] - p.detach()) if p.requires_grad else current[n] for n, p in params.items()}
