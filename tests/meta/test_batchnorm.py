"""metahyper.meta.batchnorm: our BatchNorm double backward against PyTorch's (float64), its memory
format and higher derivatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metahyper.meta.batchnorm import batch_norm_train
from tests.meta.conftest import assert_double_backward_matches

SHAPES = {"4d": (4, 3, 5, 5), "3d": (6, 3, 7), "2d": (8, 3)}


def _inputs(shape, channels_last=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(shape[1], generator=g, dtype=torch.float64)
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_()


def _native(x, w, b):
    return F.batch_norm(x, None, None, w, b, True, 0.0, 1e-5)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_gradcheck_and_gradgradcheck(shape):
    for channels_last in [False, True] if len(shape) == 4 else [False]:
        x, w, b = _inputs(shape, channels_last)
        assert torch.autograd.gradcheck(batch_norm_train, (x, w, b))
        assert torch.autograd.gradgradcheck(batch_norm_train, (x, w, b))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("which", ["all", "ggx", "ggw", "ggb"])
def test_double_backward_equals_pytorch(channels_last, which):
    """Second derivatives for every combination of output cotangents, against F.batch_norm."""
    x, w, b = _inputs((5, 4, 6, 6), channels_last, seed=1)
    g = torch.Generator().manual_seed(2)
    gy = torch.randn(x.shape, generator=g, dtype=torch.float64)
    v = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (x, w, b)]
    keep = {"all": (0, 1, 2), "ggx": (0,), "ggw": (1,), "ggb": (2,)}[which]
    assert_double_backward_matches(batch_norm_train, _native, (x, w, b), (x, w, b), gy, v, keep)


def test_channels_last_stays_channels_last():
    x, w, b = _inputs((4, 8, 6, 6), channels_last=True)
    gy = torch.randn(x.shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y = batch_norm_train(x, w, b)
    gx, gw = torch.autograd.grad(y, (x, w), gy, create_graph=True)
    ggx = torch.autograd.grad((gx * gy).sum() + gw.sum(), x)[0]
    for t in (y, gx, ggx):
        assert t.is_contiguous(memory_format=torch.channels_last)


def test_third_derivatives():
    """Differentiated once more, the double backward is itself differentiable (gradgradcheck of the
    first derivatives checks the third)."""
    x, w, b = _inputs((4, 3, 5, 5), seed=3)
    gy = torch.randn(x.shape, dtype=torch.float64)

    def first(x, w, b):
        return torch.autograd.grad(batch_norm_train(x, w, b), (x, w), gy, create_graph=True)

    assert torch.autograd.gradgradcheck(first, (x, w, b))
