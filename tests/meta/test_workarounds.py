"""metahyper.meta.workarounds: the vmap BatchNorm bug is real on the installed torch (so the
work-around is still needed) and the work-around gives the reference second derivatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from metahyper.meta import workarounds
from metahyper.meta.workarounds import AffineOutsideBatchNorm


def _second_derivative(bn_affine_outside: bool) -> torch.Tensor:
    """d/dw0 of sum over 2 tasks of ||d loss / d (per-task BN weight)||^2 for a conv + BatchNorm
    with per-task (batched) affine parameters under vmap: a second derivative w.r.t. the conv
    weight before the BatchNorm."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(2, 6, 3, 6, 6, dtype=torch.float64, generator=g)
    gamma = torch.rand(2, 4, dtype=torch.float64, generator=g) + 0.5
    beta = torch.randn(2, 4, dtype=torch.float64, generator=g)

    def loss(gamma, beta, x):
        y = F.batch_norm(F.conv2d(x, w0), None, None, gamma, beta, True, 0.0, 1e-5)
        return (y.tanh() ** 2).mean()

    def per_task(gamma, beta, x):
        gg = grad(loss)(gamma, beta, x)
        return (gg**2).sum()

    if bn_affine_outside:
        with AffineOutsideBatchNorm():
            total = vmap(per_task)(gamma, beta, x).sum()
    else:
        total = vmap(per_task)(gamma, beta, x).sum()
    return torch.autograd.grad(total, w0)[0]


def _reference() -> torch.Tensor:
    """The same derivative task by task, without vmap."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(2, 6, 3, 6, 6, dtype=torch.float64, generator=g)
    gamma = torch.rand(2, 4, dtype=torch.float64, generator=g) + 0.5
    beta = torch.randn(2, 4, dtype=torch.float64, generator=g)
    total = 0
    for i in range(2):
        gi = gamma[i].clone().requires_grad_()
        y = F.batch_norm(F.conv2d(x[i], w0), None, None, gi, beta[i], True, 0.0, 1e-5)
        (gg,) = torch.autograd.grad((y.tanh() ** 2).mean(), gi, create_graph=True)
        total = total + (gg**2).sum()
    return torch.autograd.grad(total, w0)[0]


def test_workaround_gives_the_reference():
    torch.testing.assert_close(_second_derivative(True), _reference(), rtol=1e-10, atol=1e-14)


def test_bug_still_present_on_this_torch():
    """When this fails, the installed torch computes the right derivative without the
    work-around: set ``VMAP_BATCHNORM_FIXED_IN`` to its version (and keep this test for older ones)."""
    if workarounds.VMAP_BATCHNORM_FIXED_IN is not None:
        pytest.skip("work-around disabled from this torch version on")
    error = ((_second_derivative(False) - _reference()).norm() / _reference().norm()).item()
    assert error > 1e-6, f"vmap BatchNorm second derivative is right on torch {torch.__version__} (error {error:.1e})"
