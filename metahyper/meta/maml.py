"""MAML over named parameters (paper section 4, Algorithms 1 and 2), for any ``nn.Module``.

:class:`MAML` wraps a model and the names of its inner (adapted) and outer (meta-learned)
parameters; every other parameter is a constant. It chooses the BatchNorm mode and autocast and
hands the computation to a backend (:mod:`metahyper.meta.backends`). Hyper networks need nothing
special here: their parameter names come from :func:`metahyper.models.resolve_groups`, and what is
specific to them (the weight movement of Figure 4) is an observer the training code passes to
:meth:`MAML.meta_step`.

Meta-loss: ``(1/T) * sum`` over the T tasks of the query cross-entropy (paper eq. (2) divided by
T). :meth:`MAML.meta_step` backpropagates ``loss_i * loss_scale`` (default ``1/T``) per task into
``.grad`` of the outer parameters; under data parallelism each worker passes ``loss_scale=1/T``
with T global and the gradients are summed. The caller zeroes gradients before and steps its
optimiser after (:func:`make_outer_optimizer`).

BatchNorm (:mod:`metahyper.meta.batchnorm`): ``"transductive"`` (default, as MAML, higher and
learn2learn: every forward of a task normalises with its own batch statistics, running statistics
untouched) or ``"frozen"`` (the pretrained running statistics). A model with per-step BatchNorm
(:mod:`metahyper.models.per_step_bn`, MAML++) uses each inner step's own affine parameters and
statistics; :meth:`MAML.meta_step` records the per-step statistics.

Memory: second order keeps every inner step's graph until the backward, so peak memory grows
linearly with the inner steps; ``inner_checkpoint`` recomputes them instead (gradient checkpointing
through the inner loop, Baranchuk et al. 2019, "Memory-efficient MAML";
:func:`metahyper.meta.inner_loop.inner_loop`), same meta-gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from metahyper.errors import UserError
from metahyper.meta.backends import BACKENDS, Backend, Mode, Observer, Task
from metahyper.meta.batchnorm import BN_MODES, batchnorm_mode
from metahyper.meta.heads import make_head
from metahyper.meta.inner_loop import chunk_size
from metahyper.meta.rules import INNER_RULES, InnerRule
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.models.per_step_bn import recording_statistics

AUTOCAST_DTYPES = (None, torch.bfloat16, torch.float16)


@dataclass
class MetaStepResult:
    """One meta-step: means over its tasks."""

    loss: float  # mean query cross-entropy (the meta-loss)
    accuracy: float  # mean query accuracy after adaptation
    num_tasks: int


def checkpoint_interval(value: bool | int) -> int:
    """The inner loop's checkpoint interval of ``inner_checkpoint``: ``False`` / 0 off, ``True`` /
    1 every step, N every N steps; a :class:`UserError` for anything else."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or value < 0:
        raise UserError(
            f"inner_checkpoint must be False/0 (off), True/1 (every step) or N > 1 (every N steps), got {value!r}"
        )
    return value


def _names(model: nn.Module, names: Iterable[str] | None, what: str) -> tuple[str, ...]:
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    if names is None:
        return tuple(trainable)
    names = tuple(dict.fromkeys(names))
    unknown = [n for n in names if n not in trainable]
    if unknown:
        raise UserError(
            f"{what} parameter(s) {unknown[:3]} are not trainable parameters of the model; "
            "pass names from model.named_parameters() with requires_grad"
        )
    if not names:
        raise UserError(f"no {what} parameters given; name at least one (None: every trainable parameter)")
    order = {n: i for i, n in enumerate(trainable)}
    return tuple(sorted(names, key=order.__getitem__))


def _check(backend: Any, bn: str, autocast: Any, inner_lr: Any, inner_steps: int, eval_inner_steps: int) -> None:
    """One-line :class:`UserError` for a bad :class:`MAML` setting."""
    if not (isinstance(backend, type) and issubclass(backend, Backend)) and backend not in BACKENDS:
        raise UserError(f"unknown MAML backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if bn not in BN_MODES:
        raise UserError(f"unknown batch-norm mode {bn!r}; choose from {', '.join(BN_MODES)}")
    if autocast not in AUTOCAST_DTYPES:
        raise UserError(f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast}")
    if not (isinstance(inner_lr, (int, float)) and math.isfinite(inner_lr) and inner_lr > 0):
        raise UserError(f"inner learning rate must be a positive number, got {inner_lr}")
    if not (0 <= inner_steps <= MAX_INNER_STEPS and 0 <= eval_inner_steps <= MAX_INNER_STEPS):
        raise UserError(
            f"inner steps must lie in 0..{MAX_INNER_STEPS}, got train {inner_steps}, eval {eval_inner_steps}; "
            "lower them (a checkpoint recording more is damaged or crafted)"
        )


def _check_weights(weights: Sequence[float], steps: int) -> list[float]:
    """One finite non-negative weight per inner step, or a :class:`UserError`."""
    weights = [float(w) for w in weights]
    if len(weights) != steps or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise UserError(f"step_weights must be {steps} finite non-negative numbers (one per inner step), got {weights}")
    return weights


def _check_chunk(chunk: Any, model: nn.Module, bn: str) -> int:
    """``support_chunk`` of :class:`MAML`, or a one-line :class:`UserError`."""
    if (
        chunk_size(chunk)
        and bn == "transductive"
        and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    ):
        raise UserError(
            "support_chunk splits the support set, but transductive BatchNorm normalises each forward with its own "
            "batch's statistics, so chunks would change the gradient; use bn='frozen' (--bn frozen) or no chunks"
        )
    return chunk


def _build_rule(
    rule: str | type[InnerRule] | InnerRule,
    model: nn.Module,
    inner: Sequence[str],
    lr: float,
    steps: int,
    one_row: Sequence[str] = (),
) -> InnerRule:
    """The inner rule of :class:`MAML` from a name, a class or a built rule. The parameters named
    in ``one_row`` (a per-task head's, whose rows are each task's classes) are given to the rule
    as their first row, so a rule that learns a tensor of each parameter's shape (Meta-SGD) learns
    one row for them, shared by every class of every task and broadcast to the task's width."""
    if isinstance(rule, InnerRule):
        return rule
    if isinstance(rule, str):
        if rule not in INNER_RULES:
            raise UserError(f"unknown inner rule {rule!r}; choose from {', '.join(INNER_RULES)}")
        rule = INNER_RULES[rule]
    if not (isinstance(rule, type) and issubclass(rule, InnerRule)):
        raise UserError(f"inner_rule must be a name, an InnerRule subclass or an InnerRule, got {rule!r}")
    named = dict(model.named_parameters())
    return rule({n: named[n][:1] if n in one_row else named[n] for n in inner}, lr, steps)


class MAML(nn.Module):
    """Model-agnostic meta-learning of ``model``, itself an ``nn.Module``: its submodules are the
    model and the inner update rule (``inner_rule``), so its ``parameters()`` / ``state_dict()``
    include the rule's learned state (e.g. learned inner rates), moved, optimised and saved with
    the model (:meth:`outer_parameters`: what the outer optimiser learns).

    ``inner`` / ``outer``: names of the parameters adapted by the inner loop and learned by the
    outer optimiser (default: every trainable parameter, Algorithm 1). ``inner_rule``: a name of
    :data:`metahyper.meta.rules.INNER_RULES` (default ``"sgd"``: ``p - inner_lr * g``, eq. (1)),
    an :class:`~metahyper.meta.rules.InnerRule` subclass (built with the inner parameters,
    ``inner_lr`` and ``inner_steps``) or a built rule. ``inner_steps`` (meta-training) and
    ``eval_inner_steps`` (evaluation) count its steps; ``first_order`` FOMAML; ``bn`` the
    BatchNorm mode; ``backend`` a name of :data:`metahyper.meta.backends.BACKENDS` (or a
    :class:`~metahyper.meta.backends.Backend` subclass); ``autocast`` (``torch.bfloat16`` /
    ``torch.float16``) mixed precision for every forward (parameters and gradients keep their
    dtype); ``inner_checkpoint`` (second order; :func:`checkpoint_interval`) keeps only every N-th
    adapted state of the inner loop and recomputes the steps between them in the backward: peak
    memory about constant in the inner steps instead of linear, same meta-gradient, more time
    (backend ``vmap``: not supported). ``head``: how each task's classifier starts
    (:mod:`metahyper.meta.heads`): ``"learned"`` (the model's, fixed width), ``"zero"`` (zeros,
    Ye & Chao 2022) or ``"proto"`` (Proto-MAML, Triantafillou et al. 2020), the last two built at
    each task's width (variable ways), adapted and never meta-learned (left out of the outer
    parameters); ``classifier``: the names of the classifier's weight and bias (needed by
    ``zero`` and ``proto``; with ``learned`` it lets a task of other ways be refused in one line).
    ``support_chunk=N``: each inner step's support gradient is accumulated over chunks of N images
    (same gradient; needs BatchNorm on running statistics, ``bn="frozen"``, where the model has
    BatchNorm; :func:`~metahyper.meta.inner_loop.inner_loop`). Flags given here can be overridden
    per call.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        inner: Iterable[str] | None = None,
        outer: Iterable[str] | None = None,
        inner_rule: str | type[InnerRule] | InnerRule = "sgd",
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        eval_inner_steps: int = 10,
        first_order: bool = False,
        bn: str = "transductive",
        backend: str | type[Backend] = "func",
        autocast: torch.dtype | None = None,
        inner_checkpoint: bool | int = False,
        head: str = "learned",
        classifier: Sequence[str] = (),
        support_chunk: int = 0,
    ) -> None:
        super().__init__()
        _check(backend, bn, autocast, inner_lr, inner_steps, eval_inner_steps)
        self.model = model
        self.inner_params = _names(model, inner, "inner")
        built = isinstance(inner_rule, InnerRule) and inner_rule.elementwise  # its tensors' widths are its own
        self.head = make_head(model, head, classifier, self.inner_params, inner_rule.name if built else "")
        per_task = self.head.names if self.head.per_task else ()
        self.inner_rule = _build_rule(inner_rule, model, self.inner_params, inner_lr, inner_steps, per_task)
        self.outer_params = tuple(n for n in _names(model, outer, "outer") if n not in per_task)
        self.inner_lr, self.inner_steps, self.eval_inner_steps = inner_lr, inner_steps, eval_inner_steps
        self.first_order, self.bn, self.autocast = first_order, bn, autocast
        self.inner_checkpoint = checkpoint_interval(inner_checkpoint)
        self.support_chunk = _check_chunk(support_chunk, model, bn)
        backend_cls = BACKENDS[backend] if isinstance(backend, str) else backend
        self.backend = backend_cls(
            model, self.inner_params, self.outer_params, self.inner_rule, self._settings, self.head, self.support_chunk
        )
        self._inner_checkpoint(None, not first_order)  # a backend that cannot checkpoint: fail here already

    def forward(self, x: Tensor) -> Tensor:
        """The model's forward (no adaptation)."""
        return self.model(x)

    @property
    def inner_lrs(self) -> nn.ParameterDict:
        """The learned inner rates of a rule that has them (``meta-sgd``: one tensor of each inner
        parameter's shape; ``lslr``: one vector of ``inner_steps + 1`` per-step rates), keyed by
        :func:`~metahyper.meta.rules.rate_key` of the parameter's name, in the model's order."""
        lrs = getattr(self.inner_rule, "lrs", None)
        if not isinstance(lrs, nn.ParameterDict):
            raise UserError(
                f"inner rule {self.inner_rule.name!r} has no learned rates; use inner_rule='meta-sgd' or 'lslr'"
            )
        return lrs

    def outer_parameters(self) -> list[nn.Parameter]:
        """What the outer optimiser learns: the model's outer parameters, then the rule's learned
        ones."""
        named = dict(self.model.named_parameters())
        rule = [p for p in self.inner_rule.parameters() if p.requires_grad]
        return [named[n] for n in self.outer_params] + rule

    def _settings(self, grad: bool = True) -> AbstractContextManager[Any]:
        """BatchNorm mode, autocast and grad mode of every computation of a call."""
        stack = ExitStack()
        stack.enter_context(batchnorm_mode(self.model, self.bn))
        stack.enter_context(torch.enable_grad() if grad else nullcontext())
        if self.autocast is not None:
            stack.enter_context(torch.autocast(next(self.model.parameters()).device.type, dtype=self.autocast))
        return stack

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        *,
        steps: int | None = None,
        first_order: bool | None = None,
        create_graph: bool | None = None,
        inner_checkpoint: bool | int | None = None,
    ) -> dict[str, Tensor]:
        """The adapted inner parameters (name -> tensor) after ``steps`` (default ``inner_steps``)
        SGD steps on the support set. ``create_graph`` (default: grad mode on) keeps the graph to
        the outer parameters (second order, or FOMAML's identity Jacobian with ``first_order``);
        ``False`` returns detached tensors."""
        steps = self.inner_steps if steps is None else steps
        first_order = self.first_order if first_order is None else first_order
        create_graph = torch.is_grad_enabled() if create_graph is None else create_graph
        mode = Mode.of(first_order) if create_graph else Mode.EVAL
        interval = self._inner_checkpoint(inner_checkpoint, mode is Mode.SECOND)
        with self._settings(), self.backend.task_context():
            return self.backend.adapt(self.backend.images(support_x), support_y, steps, mode, interval)

    def _inner_checkpoint(self, value: bool | int | None, second_order: bool) -> int:
        """The inner loop's recompute interval of a call (0 outside second order); a
        :class:`UserError` where the backend cannot checkpoint the inner loop."""
        interval = self.inner_checkpoint if value is None else checkpoint_interval(value)
        if interval and second_order and not self.backend.can_checkpoint:
            raise UserError(
                f"backend {self.backend.name!r} cannot checkpoint the inner loop "
                "(torch.utils.checkpoint under torch.func.vmap); use backend 'func' or inner_checkpoint=0"
            )
        return interval if second_order else 0

    def meta_step(
        self,
        tasks: Iterable[Task],
        *,
        first_order: bool | None = None,
        steps: int | None = None,
        loss_scale: float | None = None,
        observers: Sequence[Observer] = (),
        inner_checkpoint: bool | int | None = None,
        step_weights: Sequence[float] | None = None,
    ) -> MetaStepResult:
        """One meta-batch: adapt on each task's support set and backpropagate ``query loss *
        loss_scale`` (default ``1 / len(tasks)``) into ``.grad`` of the outer parameters. Each
        observer is called once per task with the task's adapted inner parameters (detached),
        outside autocast. ``step_weights`` (one per inner step): the meta-loss is the weighted sum
        of the query losses after every step instead (MAML++'s multi-step loss,
        :func:`metahyper.meta.msl.msl_weights`); the reported loss stays the final query loss."""
        tasks = list(tasks)
        if not tasks:
            raise UserError("meta_step got no tasks; the meta-batch size must be >= 1")
        steps = self.inner_steps if steps is None else steps
        first_order = self.first_order if first_order is None else first_order
        scale = 1.0 / len(tasks) if loss_scale is None else loss_scale
        device = next(self.model.parameters()).device.type
        observers = [_without_autocast(observe, device) for observe in observers]
        interval = self._inner_checkpoint(inner_checkpoint, not first_order)
        extra = {} if step_weights is None else {"step_weights": _check_weights(step_weights, steps)}
        with self._settings(), recording_statistics():  # per-step BatchNorm: each step's statistics
            outcomes = self.backend.meta_step(tasks, steps, first_order, scale, observers, interval, **extra)
        n = len(outcomes)
        return MetaStepResult(sum(o.loss for o in outcomes) / n, sum(o.accuracy for o in outcomes) / n, n)

    def evaluate(self, task: Task, *, steps: int | None = None) -> float:
        """Query accuracy after ``steps`` (default ``eval_inner_steps``) inner steps; no gradient of any
        parameter is touched, BatchNorm statistics are untouched."""
        return self.evaluate_tasks([task], steps=steps)[0]

    def evaluate_tasks(self, tasks: Iterable[Task], *, steps: int | None = None) -> list[float]:
        """:meth:`evaluate` of each task, in order."""
        steps = self.eval_inner_steps if steps is None else steps
        with self._settings():
            return [self.backend.evaluate(t, i, steps) for i, t in enumerate(tasks)]


def _without_autocast(observe: Observer, device: str) -> Observer:
    """``observe`` called in full precision, whatever the meta-step's autocast."""

    def call(adapted: Mapping[str, Tensor]) -> None:
        with torch.autocast(device, enabled=False):
            observe(adapted)

    return call


OUTER_SCHEDULES = ("halve", "cosine")


def make_outer_optimizer(
    params: Iterable[nn.Parameter],
    lr: float = 1e-3,
    halve_every: int = 1000,
    min_lr: float = 1e-4,
    schedule: str = "halve",
    total: int | None = None,
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over ``params`` and its schedule (call ``scheduler.step()`` once per meta-iteration):
    ``"halve"``, lr halved every ``halve_every`` steps down to ``min_lr`` (paper section 5.4,
    after Sun et al. 2019); ``"cosine"``, cosine annealing from ``lr`` to ``min_lr`` over ``total``
    steps (MAML++, Antoniou et al. 2019, whose code anneals over its epochs)."""
    if not (lr > 0 and min_lr > 0 and halve_every >= 1):
        raise UserError(f"need lr > 0, min_lr > 0, halve_every >= 1; got {lr}, {min_lr}, {halve_every}")
    if schedule not in OUTER_SCHEDULES or (schedule == "cosine" and not (total and total >= 1)):
        raise UserError(
            f"outer schedule must be one of {', '.join(OUTER_SCHEDULES)} (cosine with total >= 1), got {schedule!r}"
        )
    opt = torch.optim.Adam(list(params), lr=lr)
    if schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=min(min_lr, lr))
    floor = min(1.0, min_lr / lr)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda it: max(0.5 ** (it // halve_every), floor))
