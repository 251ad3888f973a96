"""Learned per-layer per-step inner rates (LSLR; Antoniou et al. 2019, "How to train your MAML",
reference code ``AntreasAntoniou/HowToTrainYourMAMLPytorch``): per inner parameter a vector of
``steps + 1`` rates, initialised at the inner learning rate, rate ``[step]`` used at inner step
``step``; meta-learned by the outer optimiser. Evaluation with more steps than meta-training
reuses the last rate (index ``steps``) for every step past it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from metahyper.meta.rules.base import InnerRule, Params
from metahyper.meta.rules.meta_sgd import rate_key


class LSLR(InnerRule):
    """``p - lrs[p][min(step, steps)] * g``; ``lrs``: an ``nn.ParameterDict`` with one vector of
    ``steps + 1`` rates per inner parameter (model order, key :func:`rate_key` of its name)."""

    name = "lslr"

    def __init__(self, params: Mapping[str, Tensor], lr: float, steps: int) -> None:
        super().__init__(params, lr, steps)
        self.lrs = nn.ParameterDict(  # pairs, not a dict: ParameterDict sorts the keys of a plain dict
            [
                (rate_key(n), nn.Parameter(torch.full((steps + 1,), float(lr), dtype=p.dtype, device=p.device)))
                for n, p in params.items()
            ]
        )

    def step(self, params: Params, grads: Params, step: int, state: Params) -> tuple[Params, Params]:
        k = min(step, self.steps)
        return {n: p - self.lrs[rate_key(n)][k] * grads[n] for n, p in params.items()}, state
