"""Meta-SGD (Li et al. 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning"):
``θ' = θ - α ∘ ∇L``, with ``α`` a learned tensor of ``θ``'s shape (one rate per element),
initialised at the inner learning rate and meta-learned with ``θ`` by the outer optimiser.

With a head built per task (``MAML(head="zero"|"proto")``) the classifier's width is the task's,
so :class:`~metahyper.meta.MAML` gives this rule the classifier's first row: its rates are one row,
a rate per feature (and one for the bias) shared by every class and broadcast to each task's
width. The classes of a task are in random order, so rates per class could learn nothing a shared
row cannot; and the rule then takes variable ways."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from metahyper.meta.rules.base import InnerRule, Params


def rate_key(name: str) -> str:
    """The key of parameter ``name`` in a rule's ``nn.ParameterDict`` (which refuses dots)."""
    return name.replace(".", "/")


class MetaSGD(InnerRule):
    """``p - lrs[p] * g`` elementwise; ``lrs``: an ``nn.ParameterDict`` with one entry per inner
    parameter (model order, key :func:`rate_key` of its name), each of that parameter's shape,
    dtype and device."""

    name = "meta-sgd"
    elementwise = True

    def __init__(self, params: Mapping[str, Tensor], lr: float, steps: int) -> None:
        super().__init__(params, lr, steps)
        # pairs, not a dict: ParameterDict sorts the keys of a plain dict
        self.lrs = nn.ParameterDict(
            [(rate_key(n), nn.Parameter(torch.full_like(p.detach(), lr))) for n, p in params.items()]
        )

    def step(self, params: Params, grads: Params, step: int, state: Params) -> tuple[Params, Params]:
        return {n: p - self.lrs[rate_key(n)] * grads[n] for n, p in params.items()}, state
