"""The inner update rule: how one inner-loop step turns a task's gradients into new parameters.

An :class:`InnerRule` is an ``nn.Module``: learned state (e.g. per-parameter learning rates) is
its parameters, so it is meta-learned by the outer optimiser beside the model and saved in
:class:`~metahyper.meta.MAML`'s ``state_dict``. Per-task state that lives across the steps of one
task's inner loop (e.g. a velocity) is NOT kept on the module: :meth:`InnerRule.init_state` makes
it and :meth:`InnerRule.step` returns the next one, so the inner loop can carry, differentiate and
recompute it (checkpointed segments restart from a saved ``(params, state)`` pair).

Contract of :meth:`InnerRule.step`: a pure function of its arguments and of the rule's parameters
(no in-place update of anything it is given, no randomness), differentiable w.r.t. all of them
(second-order MAML differentiates through it). ``step`` is the 0-based index of the inner step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from torch import Tensor, nn

Params = dict[str, Tensor]


class InnerRule(nn.Module, ABC):
    """Base of inner update rules. Subclasses take ``(params, lr, steps)`` in their constructor:
    ``params`` the model's inner parameters (name -> tensor, in the model's order; shapes and
    devices, not values, matter; a per-task head's weight and bias come as their first row, as
    each task has its own width), ``lr`` the inner learning rate of ``MAML(inner_lr=...)`` and
    ``steps`` the inner steps of meta-training."""

    name = "base"
    elementwise = False  # learns a tensor of each inner parameter's shape (broadcast over a per-task head's rows)

    def __init__(self, params: Mapping[str, Tensor], lr: float, steps: int) -> None:
        super().__init__()
        self.lr, self.steps = lr, steps

    def init_state(self, params: Mapping[str, Tensor]) -> Params:
        """The per-task state before the first step (default: none)."""
        return {}

    @abstractmethod
    def step(self, params: Params, grads: Params, step: int, state: Params) -> tuple[Params, Params]:
        """``(params after step `step`, the next state)``."""

    def extra_repr(self) -> str:
        return f"lr={self.lr}, steps={self.steps}"
