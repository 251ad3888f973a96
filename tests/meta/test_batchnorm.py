"""metahyper.meta.batchnorm: our BatchNorm double backward against PyTorch's (float64), its memory
format, and the context managers that install it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metahyper.meta.batchnorm import batch_norm_train, batchnorm_double_backward, batchnorm_mode
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
    for channels_last in ([False, True] if len(shape) == 4 else [False]):
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


def test_context_applies_in_transductive_mode_only_and_restores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2)).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    bns = [m for m in model if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(6, 3, 7, 7, dtype=torch.float64)
    calls = []

    def count(*args):
        calls.append(1)
        return original(*args)

    import metahyper.meta.batchnorm as module
    original, module._BatchNormTrain.apply = module._BatchNormTrain.apply, count
    try:
        for mode in ("transductive", "frozen"):
            with batchnorm_mode(model, mode):
                expected = model(x)
                with batchnorm_double_backward(model):
                    calls.clear()
                    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
                    assert len(calls) == (len(bns) if mode == "transductive" else 0), mode
        model.train()  # tracking running statistics: the class forward (updates them)
        before = bns[0].running_mean.clone()
        with batchnorm_double_backward(model):
            calls.clear()
            model(x)
        assert not calls and not torch.equal(before, bns[0].running_mean)
    finally:
        module._BatchNormTrain.apply = original
    assert all("forward" not in m.__dict__ for m in bns)
