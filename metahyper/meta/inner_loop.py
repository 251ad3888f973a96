"""The inner loop of MAML (paper section 4, Algorithms 1 and 2): SGD on a task's support set.

One functional primitive, :func:`inner_loop`: named parameters in, adapted parameters out. It knows
nothing of the model: the backend hands it ``forward(params, x)`` (e.g. a
:func:`torch.func.functional_call` closure) and a gradient rule (:func:`autograd_grad`, or
:func:`functorch_grad` to run under :func:`torch.func.vmap`).
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from metahyper.errors import UserError

Params = dict[str, Tensor]
Forward = Callable[[Mapping[str, Tensor], Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
GradFn = Callable[[Callable[[Params], Tensor], Params, bool], Params]


def autograd_grad(loss_of: Callable[[Params], Tensor], params: Params, create_graph: bool) -> Params:
    """Gradient of ``loss_of(params)`` w.r.t. ``params`` only, by :func:`torch.autograd.grad`;
    with ``create_graph`` the result is differentiable again (second order). Tensors that do not
    require grad are differentiated as fresh leaves."""
    params = {n: p if p.requires_grad else p.detach().requires_grad_() for n, p in params.items()}
    grads = torch.autograd.grad(loss_of(params), list(params.values()), create_graph=create_graph)
    return dict(zip(params, grads))


def functorch_grad(loss_of: Callable[[Params], Tensor], params: Params, create_graph: bool) -> Params:
    """The same gradient by :func:`torch.func.grad`, which composes with :func:`torch.func.vmap`.
    The regular autograd graph runs through it, so ``create_graph`` needs no flag here."""
    return torch.func.grad(loss_of)(params)


def inner_loop(
    forward: Forward,
    params: Mapping[str, Tensor],
    support_x: Tensor,
    support_y: Tensor,
    *,
    lr: float = 0.01,
    steps: int = 5,
    first_order: bool = False,
    loss_fn: LossFn = F.cross_entropy,
    grad: GradFn = autograd_grad,
) -> Params:
    """Adapt ``params`` by ``steps`` SGD steps (lr ``lr``) on ``loss_fn(forward(params, support_x),
    support_y)``; gradients are taken w.r.t. ``params`` only.

    Second order (default): every step keeps its graph; the result is differentiable w.r.t.
    everything ``params`` and ``forward`` depend on. ``first_order=True`` (FOMAML): the steps run on
    detached tensors without graph and the result is ``p + (adapted - p).detach()`` (identity
    Jacobian), or the detached adapted tensor where ``p`` does not require grad (evaluation).
    ``steps=0`` returns ``params``. Raises :class:`UserError` for ``steps < 0``.
    """
    if steps < 0:
        raise UserError(f"inner steps must be >= 0, got {steps}")

    def loss_of(current: Params) -> Tensor:
        return loss_fn(forward(current, support_x), support_y)

    if not first_order:
        current = dict(params)
        for _ in range(steps):
            grads = grad(loss_of, current, True)
            current = {n: torch.add(p, grads[n], alpha=-lr) for n, p in current.items()}
        return current
    current = {n: p.detach() for n, p in params.items()}
    for _ in range(steps):
        grads = grad(loss_of, current, False)
        current = {n: torch.add(p, grads[n], alpha=-lr).detach() for n, p in current.items()}
    if not steps:
        return dict(params)
    return {n: p + (current[n] - p.detach()) if p.requires_grad else current[n] for n, p in params.items()}
