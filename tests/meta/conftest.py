"""Shared checks of the meta-learner's own double backwards (BatchNorm, convolution)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def assert_double_backward_matches(
    ours: Callable[..., Tensor],
    native: Callable[..., Tensor],
    args: Sequence[Tensor | None],
    params: Sequence[Tensor],
    gy: Tensor,
    v: Sequence[Tensor],
    keep: Sequence[int],
) -> None:
    """Value, first derivatives (w.r.t. ``params``, cotangent ``gy``) and second derivatives of
    ``sum_k <first[k], v[k]>`` over ``keep`` (w.r.t. ``params`` and ``gy``) of ``ours(*args)``
    equal those of ``native(*args)`` (float64: rtol 1e-10)."""
    results = []
    for fn in (ours, native):
        y = fn(*args)
        first = torch.autograd.grad(y, params, gy, create_graph=True)
        inner = sum((first[k] * v[k]).sum() for k in keep)
        second = torch.autograd.grad(inner, (*params, gy.requires_grad_()), allow_unused=True, materialize_grads=True)
        gy.requires_grad_(False)
        results.append((y, first, second))
    (y, first, second), (y_ref, first_ref, second_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip((*first, *second), (*first_ref, *second_ref)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)
