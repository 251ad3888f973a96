"""The benchmark's baseline: MAML as a user writes it with stock ``higher`` (its MAML example).

``higher.innerloop_ctx`` with an SGD over the adapted parameters only; but higher's
differentiable optimiser differentiates the support loss w.r.t. EVERY parameter of the patched
module (and copies all of them per task), which is the work metahyper's backends avoid. Same
meta-gradient (``tests/tools/test_stock_higher.py``). Not offered to users: the benchmark passes
:class:`StockHigherBackend` to :class:`metahyper.meta.MAML` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import higher
import torch
import torch.nn.functional as F

from metahyper.meta.backends.base import Backend, Observer, Task, TaskOutcome, accuracy, task_tensors
from metahyper.meta.backends.higher import references_hidden


class StockHigherBackend(Backend):
    name = "stock_higher"
    can_checkpoint = False  # higher's own inner loop

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
        if step_weights is not None:
            raise NotImplementedError("the stock higher baseline has no multi-step loss")
        named = dict(self.model.named_parameters())
        outcomes = []
        for i, task in enumerate(tasks):
            sx, sy, qx, qy = task_tensors(task, i)
            opt = torch.optim.SGD([named[n] for n in self.inner], lr=self.rule.lr)
            with references_hidden(self.model) as relink:
                ctx = higher.innerloop_ctx(
                    self.model, opt, copy_initial_weights=False, track_higher_grads=not first_order
                )
                fmodel, diffopt = ctx.__enter__()
            try:
                relink(fmodel)
                for _ in range(steps):
                    diffopt.step(F.cross_entropy(fmodel(sx), sy))
                logits = fmodel(qx)
                loss = F.cross_entropy(logits, qy)
                fast = dict(zip(named, fmodel.parameters()))
                if first_order:  # fast weights are detached leaves: the FOMAML gradient by hand
                    grads = torch.autograd.grad(loss * scale, [fast[n] for n in self.outer], allow_unused=True)
                    for n, g in zip(self.outer, grads):
                        if g is not None:
                            p = named[n]
                            p.grad = g.detach().clone() if p.grad is None else p.grad.add_(g)
                else:
                    torch.autograd.backward(loss * scale, inputs=[named[n] for n in self.outer])
                outcomes.append(TaskOutcome(loss.item(), accuracy(logits.detach(), qy)))
                for observe in observers:
                    observe({n: fast[n].detach() for n in self.inner})
            finally:
                ctx.__exit__(None, None, None)
        return outcomes
