"""Inner-loop weight movement (paper section 5.4, Figure 4).

For every 3x3 conv of the residual stages (:func:`~metahyper.models.groups.stage_conv_weights`:
the generated weight of a hyper layer, the raw weight of a plain conv), ``||W(adapted) - W||``
(Frobenius), averaged over the tasks of a meta-batch. A layer whose weight depends on no adapted
parameter moves exactly 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from metahyper.models.groups import stage_conv_weights


class WeightMovement:
    """An observer for :meth:`metahyper.meta.MAML.meta_step`: call it with each task's adapted
    parameters (it computes without graph), then :meth:`pop` the per-layer means of the meta-step.
    The starting weights are taken at the first call after each :meth:`pop` (after the outer step)."""

    def __init__(self, model: nn.Module) -> None:
        self.weights = stage_conv_weights(model)
        self.layers = list(self.weights)
        self._start: dict[str, Tensor] | None = None
        self._sums = dict.fromkeys(self.layers, 0.0)
        self._count = 0

    @torch.no_grad()
    def __call__(self, adapted: Mapping[str, Tensor]) -> None:
        if self._start is None:
            self._start = {k: fn({}) for k, fn in self.weights.items()}
        for k, fn in self.weights.items():
            self._sums[k] += torch.linalg.vector_norm(fn(adapted) - self._start[k]).item()
        self._count += 1

    def pop(self) -> dict[str, float]:
        """Mean movement per layer over the tasks seen since the last pop (0.0 with none); resets."""
        means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
        self._start, self._sums, self._count = None, dict.fromkeys(self.layers, 0.0), 0
        return means
