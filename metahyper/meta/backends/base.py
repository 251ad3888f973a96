"""What every backend shares: binding parameters to the inner and query forwards, one task's
adaptation, and a meta-step that takes the tasks one by one.

A backend decides HOW a forward and its gradients are computed; :class:`~metahyper.meta.MAML`
decides WHAT is computed (which parameters adapt and learn, BatchNorm mode, autocast) and runs the
backend's methods inside those settings. A new backend subclasses :class:`Backend`, overrides what
differs and registers itself in :mod:`metahyper.meta.backends`.

Modes of an adaptation (:class:`Mode`): ``SECOND`` (graph through the inner loop to the outer
parameters), ``FIRST`` (FOMAML: identity Jacobian of the adapted parameters) and ``EVAL`` (no graph
to anything: evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metahyper.errors import UserError
from metahyper.meta.heads import Head, prototype_head
from metahyper.meta.inner_loop import Forward, GradFn, autograd_grad, inner_loop
from metahyper.meta.rules import InnerRule, Params
from metahyper.models.per_step_bn import at_inner_step


class Mode(str, Enum):
    """How an adaptation is differentiated (module docstring); equal to its string value."""

    SECOND = "second"
    FIRST = "first"
    EVAL = "eval"

    @classmethod
    def of(cls, first_order: bool) -> Mode:
        """The training mode of a meta-step: FIRST for FOMAML, else SECOND."""
        return cls.FIRST if first_order else cls.SECOND


Observer = Callable[[Mapping[str, Tensor]], None]  # called with each task's detached adapted parameters


class Task(Protocol):
    """What a meta-step needs of a task (e.g. :class:`metahyper.data.Episode`)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor


@dataclass
class TaskOutcome:
    """One task of a meta-step: its query loss (before scaling) and query accuracy."""

    loss: float
    accuracy: float


def task_tensors(task: Any, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(support_x, support_y, query_x, query_y)`` of task ``i``, or a :class:`UserError`."""
    try:
        return task.support_x, task.support_y, task.query_x, task.query_y
    except AttributeError as e:
        raise UserError(f"task {i} has no {e.name!r}; tasks need support_x, support_y, query_x, query_y") from None


def accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(-1) == y).float().mean().item()


class Backend:
    """Tasks one by one through :func:`torch.func.functional_call` and :func:`autograd_grad`.

    ``inner`` / ``outer``: names of the adapted and of the meta-learned parameters of ``model``;
    ``rule``: the inner update rule; ``settings()``: the context every computation of a call runs
    in (BatchNorm mode, autocast, grad mode: :class:`~metahyper.meta.MAML` passes its own), entered
    again around each recomputation of a checkpointed inner segment; ``head``: how each task's
    classifier starts (:mod:`metahyper.meta.heads`); ``support_chunk``: images per chunk of the
    inner loop's support gradient (0: the whole support set at once).
    """

    name = "base"
    can_checkpoint = True  # supports a checkpointed inner loop (MAML(inner_checkpoint=...))
    grad: GradFn = staticmethod(autograd_grad)

    def __init__(
        self,
        model: nn.Module,
        inner: Sequence[str],
        outer: Sequence[str],
        rule: InnerRule,
        settings: Callable[[], AbstractContextManager[Any]] = nullcontext,
        head: Head | None = None,
        support_chunk: int = 0,
    ) -> None:
        self.model, self.inner, self.outer, self.rule, self.settings = model, tuple(inner), tuple(outer), rule, settings
        self._outer_set, self.head, self.support_chunk = frozenset(outer), head or Head(), support_chunk

    def learned(self) -> list[Tensor]:
        """What the meta-gradient reaches: the outer parameters, then the rule's learned ones."""
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.outer] + [p for p in self.rule.parameters() if p.requires_grad]

    # -- binding --------------------------------------------------------------------------------

    def start(self, mode: Mode) -> tuple[Params, Params]:
        """``(starting inner parameters, constants of the inner forwards)``. An inner parameter that
        is also outer starts as the Parameter itself (graph kept) outside evaluation; inner-only ones
        start as detached leaves (no gradient reaches them). Every other parameter is a detached
        constant, except outer ones in second order (their graph is needed). A head built per task
        (:meth:`head_start`) is in neither."""
        start, constants = {}, {}
        per_task = self.head.names if self.head.per_task else ()
        for n, p in self.model.named_parameters():
            if n in per_task:
                continue
            if n in self.inner:
                start[n] = (
                    p
                    if (mode is not Mode.EVAL and n in self._outer_set)
                    else p.detach().requires_grad_(mode is Mode.SECOND)
                )
            elif mode is not Mode.SECOND or n not in self._outer_set:
                constants[n] = p.detach()
        return start, constants

    def with_head(self, start: Params, mode: Mode, x: Tensor, y: Tensor, ways: int) -> Params:
        """The starting parameters ``start`` (of :meth:`start`) with the task's head
        (:meth:`head_start`). A head computed from the other starting parameters (Proto-MAML's) is
        an independent variable of the inner loss: the inner loop starts from views of those
        parameters, so that its gradient w.r.t. them is the partial derivative (not the path
        through the head), while the meta-gradient reaches them through both."""
        head = self.head_start(start, x, y, ways, mode)
        if self.head.kind == "proto" and mode is not Mode.EVAL:
            start = {n: t.view_as(t) if t.requires_grad else t for n, t in start.items()}
        return {**start, **head}

    def head_start(self, start: Params, x: Tensor, y: Tensor, ways: int, mode: Mode) -> Params:
        """The classifier a task starts from, at its width ``ways`` (:mod:`metahyper.meta.heads`;
        empty for the learned head): zeros, or Proto-MAML's from the support ``(x, y)`` and the
        task's starting parameters ``start``, with graph to them and the outer parameters outside
        evaluation."""
        head = self.head
        if not head.per_task:
            return {}
        weight = self.model.get_parameter(head.weight)
        like = {"dtype": weight.dtype, "device": weight.device}
        if head.kind == "zero":
            # no graph to anything (the gradient functions differentiate it as a fresh leaf; under vmap too)
            return {head.weight: torch.zeros(ways, weight.shape[1], **like), head.bias: torch.zeros(ways, **like)}
        identity = {head.weight: torch.eye(weight.shape[1], **like), head.bias: torch.zeros(weight.shape[1], **like)}
        with torch.no_grad() if mode is Mode.EVAL else nullcontext(), at_inner_step(0):  # the first step's body
            features = self.forward_fn({})(self.query_values({**start, **identity}), x)  # the classifier's input
        w, b = prototype_head(features.to(weight.dtype), y, ways)
        return {head.weight: w, head.bias: b}

    def query_values(self, adapted: Mapping[str, Tensor]) -> Params:
        """Parameters of the query forward: the adapted ones, outer ones with their graph, the rest
        detached."""
        values = {
            n: p.detach() for n, p in self.model.named_parameters() if n not in adapted and n not in self._outer_set
        }
        values.update(adapted)
        return values

    def forward_fn(self, constants: Mapping[str, Tensor]) -> Forward:
        """``forward(params, x)`` of the model with ``constants`` bound too (others: the model's own)."""
        return lambda params, x: functional_call(self.model, {**constants, **params}, (x,))

    # -- hooks for subclasses -------------------------------------------------------------------

    def images(self, x: Tensor) -> Tensor:
        """A task's images as the forwards take them."""
        return x

    def task_context(self) -> AbstractContextManager[Any]:
        """Entered around everything one task (or one meta-step) computes."""
        return nullcontext()

    def inner_context(self, mode: Mode, x: Tensor) -> AbstractContextManager[Any]:
        """Entered around the inner loop only."""
        return nullcontext()

    def recompute_context(self, mode: Mode, x: Tensor) -> AbstractContextManager[Any]:
        """Entered around each recomputation of a checkpointed inner segment (during the backward,
        possibly after the call returned): what the inner loop's forwards ran in (MAML's settings,
        the backend's kernels), so that the recomputation runs the same operations
        (:func:`~metahyper.meta.inner_loop.inner_loop`)."""
        stack = ExitStack()
        stack.enter_context(self.settings())
        stack.enter_context(self.inner_context(mode, x))
        return stack

    # -- one task ------------------------------------------------------------------------------

    def adapt(
        self,
        x: Tensor,
        y: Tensor,
        steps: int,
        mode: Mode,
        inner_checkpoint: int = 0,
        trajectory: bool = False,
        ways: int | None = None,
    ) -> Params | list[Params]:
        """The adapted inner parameters after ``steps`` steps of the inner rule on ``(x, y)`` in
        ``mode`` (``trajectory``: a list, after each step); ``inner_checkpoint``: the inner loop's
        recompute interval (second order; 0: off); ``ways``: the task's (default: from ``y``)."""
        ways = self.head.ways(y) if ways is None else ways
        start, constants = self.start(mode)
        start = self.with_head(start, mode, x, y, ways)
        captured = [p for n, p in self.model.named_parameters() if n not in start and n not in constants]
        with self.inner_context(mode, x):
            return inner_loop(
                self.forward_fn(constants),
                start,
                x,
                y,
                rule=self.rule,
                steps=steps,
                first_order=mode is not Mode.SECOND,
                grad=self.grad,
                inner_checkpoint=inner_checkpoint,
                support_chunk=self.support_chunk,
                captured=captured,
                recompute_context=lambda: self.recompute_context(mode, x),
                trajectory=trajectory,
                training=mode is not Mode.EVAL,
            )

    def query_loss(
        self, adapted: Params | list[Params], x: Tensor, y: Tensor, steps: int, step_weights: Sequence[float] | None
    ) -> tuple[Params, Tensor, Tensor, Tensor]:
        """``(final adapted parameters, meta-loss, final query loss, final logits)`` after ``steps``
        inner steps: the meta-loss is the final query loss, or with ``step_weights`` (``adapted``:
        the list after each step) the weighted sum of the query losses after every step (the
        multi-step loss, :mod:`metahyper.meta.msl`)."""
        path = adapted if step_weights is not None else [adapted]
        logits = self.query(path[-1], x, steps)
        final = F.cross_entropy(logits, y)
        if step_weights is None:
            return path[-1], final, final, logits
        earlier = [F.cross_entropy(self.query(a, x, k), y) for k, a in enumerate(path[:-1], start=1)]
        meta = sum(w * loss for w, loss in zip(step_weights, [*earlier, final]))
        return path[-1], meta, final, logits

    def query(self, adapted: Mapping[str, Tensor], x: Tensor, step: int) -> Tensor:
        """Logits of the query forward with the parameters adapted by ``step`` inner steps."""
        with at_inner_step(step):  # per-step BatchNorm: the query's slot
            return self.forward_fn({})(self.query_values(adapted), x)

    def meta_step(
        self,
        tasks: Sequence[Task],
        steps: int,
        first_order: bool,
        scale: float,
        observers: Sequence[Observer],
        inner_checkpoint: int = 0,
        step_weights: Sequence[float] | None = None,
    ) -> list[TaskOutcome]:
        """Adapt on each task's support set, backpropagate ``meta-loss * scale`` (:meth:`query_loss`)
        into ``.grad`` of the outer parameters (each task's graph is released before the next),
        call each observer with the task's detached adapted parameters. ``inner_checkpoint``: the
        inner loop's recompute interval in second order (0: off)."""
        outer = self.learned()
        outcomes = []
        tensors = [task_tensors(task, i) for i, task in enumerate(tasks)]
        widths = [self.head.ways(sy, qy, i) for i, (_, sy, _, qy) in enumerate(tensors)]  # all, before any work
        for (sx, sy, qx, qy), ways in zip(tensors, widths):
            with self.task_context():
                mode, path = Mode.of(first_order), step_weights is not None
                adapted = self.adapt(self.images(sx), sy, steps, mode, inner_checkpoint, trajectory=path, ways=ways)
                adapted, meta, loss, logits = self.query_loss(adapted, self.images(qx), qy, steps, step_weights)
                torch.autograd.backward(meta * scale, inputs=outer)
            outcomes.append(TaskOutcome(loss.item(), accuracy(logits.detach(), qy)))
            fast = {n: a.detach() for n, a in adapted.items()}
            for observe in observers:
                observe(fast)
        return outcomes

    def evaluate(self, task: Task, i: int, steps: int) -> float:
        """Query accuracy after ``steps`` steps; no graph to any parameter."""
        sx, sy, qx, qy = task_tensors(task, i)
        ways = self.head.ways(sy, qy, i)
        with self.task_context():
            adapted = self.adapt(self.images(sx), sy, steps, Mode.EVAL, ways=ways)
            with torch.no_grad():
                return accuracy(self.query(adapted, self.images(qx), steps), qy)
