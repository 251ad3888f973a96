"""Plain SGD with one fixed rate (paper eq. (1), Algorithms 1 and 2: ``θ_i = θ - α ∇L``)."""

from __future__ import annotations

import torch

from metahyper.meta.rules.base import InnerRule, Params


class SGD(InnerRule):
    """``p - lr * g`` for every inner parameter; no learned state, no per-task state."""

    name = "sgd"

    def step(self, params: Params, grads: Params, step: int, state: Params) -> tuple[Params, Params]:
        return {n: torch.add(p, grads[n], alpha=-self.lr) for n, p in params.items()}, state
