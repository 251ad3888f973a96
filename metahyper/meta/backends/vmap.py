"""Backend ``vmap``: the T tasks of a meta-batch as ONE batched computation.

Their tensors are stacked (tasks of unequal shapes or ways are a :class:`UserError`) and one task's
meta-loss (:func:`~metahyper.meta.inner_loop.inner_loop` with
:func:`~metahyper.meta.inner_loop.functorch_grad`, then the query cross-entropy) is
:func:`torch.func.vmap`-ped over the task dimension; one backward of ``sum(losses) * scale`` gives
the meta-gradient of backend ``func``. Fewer, larger kernels (meant for GPUs, where one task does
not fill the device), but the graphs of all T tasks are alive at once: about T x the memory.
BatchNorm normalises each task with its own batch statistics. One adaptation alone
(:meth:`MAML.adapt`, :meth:`MAML.evaluate`) runs as in the base backend. A checkpointed inner loop
(``MAML(inner_checkpoint=...)``) is not supported here (a :class:`UserError`): its segments are an
``autograd.Function`` that recomputes its steps in the backward, outside the vmapped function, and
:func:`torch.utils.checkpoint.checkpoint` is refused by :func:`torch.func.grad` (saved-tensor hooks,
torch 2.14).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metahyper.errors import UserError
from metahyper.meta.backends.base import Backend, Mode, Observer, Task, TaskOutcome, task_tensors
from metahyper.meta.inner_loop import functorch_grad, inner_loop
from metahyper.meta.workarounds import vmap_batchnorm_workaround
from metahyper.models.per_step_bn import at_inner_step, has_per_step_batchnorm

_FIELDS = ("support_x", "support_y", "query_x", "query_y")


def stack_tasks(tasks: Sequence[Task]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each of support_x, support_y, query_x, query_y stacked over the tasks (new first dim)."""
    tensors = [task_tensors(t, i) for i, t in enumerate(tasks)]
    for k, name in enumerate(_FIELDS):
        shapes = {tuple(t[k].shape) for t in tensors}
        if len(shapes) > 1:
            raise UserError(
                f"backend 'vmap' needs tasks of equal shapes, but {name} has shapes {sorted(shapes)} across the "
                "meta-batch; use backend='func' (tasks one by one) for tasks of unequal sizes"
            )
    return tuple(torch.stack([t[k] for t in tensors]) for k in range(4))  # type: ignore[return-value]


class VmapBackend(Backend):
    name = "vmap"
    can_checkpoint = False

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        if has_per_step_batchnorm(model):
            raise UserError(
                "backend 'vmap' cannot record per-step BatchNorm statistics (an in-place update inside "
                "torch.func.vmap); use backend 'func'"
            )
        super().__init__(model, *args, **kwargs)

    def _common_ways(self, tasks: Sequence[Task]) -> int:
        """The ways of every task of the meta-batch (one head width for the batched computation),
        or a one-line :class:`UserError`."""
        ways = [self.head.ways(t.support_y, t.query_y, i) for i, t in enumerate(tasks)]
        if len(set(ways)) > 1:
            raise UserError(
                f"backend 'vmap' needs tasks of equal ways (one classifier width for the batch), got ways "
                f"{sorted(set(ways))} across the meta-batch; use backend='func' (tasks one by one) for variable ways"
            )
        return ways[0]

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
        sx, sy, qx, qy = stack_tasks(tasks)
        ways = self._common_ways(tasks)
        named = dict(self.model.named_parameters())
        mode = Mode.of(first_order)
        start, constants = self.start(mode)
        query_constants = {n: p.detach() for n, p in named.items() if n not in self._outer_set and n not in self.inner}

        def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor):
            adapted = inner_loop(
                self.forward_fn(constants),
                self.with_head(start, mode, sx, sy, ways),
                sx,
                sy,
                rule=self.rule,
                steps=steps,
                first_order=first_order,
                grad=functorch_grad,
                support_chunk=self.support_chunk,
                trajectory=step_weights is not None,
                training=True,
            )
            path = adapted if step_weights is not None else [adapted]
            query = []
            for k, a in enumerate(path, start=steps - len(path) + 1):
                with at_inner_step(k):
                    query.append(functional_call(self.model, {**query_constants, **a}, (qx,)))
            losses = [F.cross_entropy(q, qy) for q in query]
            meta = losses[-1] if step_weights is None else sum(w * loss for w, loss in zip(step_weights, losses))
            return meta, losses[-1], query[-1], path[-1]

        with vmap_batchnorm_workaround():
            metas, losses, logits, adapted = vmap(one_task)(sx, sy, qx, qy)
            torch.autograd.backward(metas.sum() * scale, inputs=self.learned())
        correct = (logits.detach().argmax(-1) == qy).float().mean(1)
        fast = {n: a.detach() for n, a in adapted.items()}
        for i in range(len(tasks)):
            for observe in observers:
                observe({n: a[i] for n, a in fast.items()})
        return [TaskOutcome(loss.item(), acc.item()) for loss, acc in zip(losses.detach(), correct)]
