"""metahyper.meta.convolution: our convolution double backward against PyTorch's (float64), third
derivatives, memory format, and the context manager that installs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metahyper.meta.convolution import conv2d_train
from tests.meta.conftest import assert_double_backward_matches

# (x shape, w shape, bias, stride, padding, dilation, groups)
CASES = {
    "3x3": ((3, 4, 7, 7), (5, 4, 3, 3), False, 1, 1, 1, 1),
    "stride2": ((2, 4, 8, 8), (6, 4, 3, 3), False, 2, 1, 1, 1),
    "1x1-stride2": ((2, 4, 7, 7), (3, 4, 1, 1), False, 2, 0, 1, 1),
    "bias-dilation": ((2, 3, 9, 9), (4, 3, 3, 3), True, 1, 2, 2, 1),
    "groups-rect": ((2, 4, 6, 7), (6, 2, 3, 2), True, (2, 1), (1, 0), 1, 2),
}


def _inputs(case, channels_last=False, seed=0):
    xs, ws, bias, *_ = CASES[case]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(ws, generator=g, dtype=torch.float64)
    b = torch.randn(ws[0], generator=g, dtype=torch.float64) if bias else None
    return [t.requires_grad_() if t is not None else None for t in (x, w, b)]


def _fns(case):
    *_, stride, padding, dilation, groups = CASES[case]
    ours = lambda x, w, b: conv2d_train(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    native = lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups)  # noqa: E731
    return ours, native


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_and_gradgradcheck(case):
    ours, _ = _fns(case)
    for channels_last in (False, True):
        x, w, b = _inputs(case, channels_last)
        args = (x, w) if b is None else (x, w, b)
        fn = (lambda x, w: ours(x, w, None)) if b is None else ours
        assert torch.autograd.gradcheck(fn, args)
        assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("which", ["all", "ggx", "ggw"])
@pytest.mark.parametrize("case", ["3x3", "stride2", "groups-rect"])
def test_double_backward_equals_pytorch(case, channels_last, which):
    """Second derivatives for every combination of cotangents of (gx, gw), against F.conv2d."""
    x, w, b = _inputs(case, channels_last, seed=1)
    ours, native = _fns(case)
    params = (x, w) if b is None else (x, w, b)
    g = torch.Generator().manual_seed(2)
    gy = torch.randn(native(x, w, b).shape, generator=g, dtype=torch.float64)
    v = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in params]
    keep = {"all": range(len(params)), "ggx": (0,), "ggw": (1,)}[which]
    assert_double_backward_matches(ours, native, (x, w, b), params, gy, v, keep)


def test_third_derivatives():
    """The double backward is made of differentiable ops: gradgradcheck of the first derivatives
    checks the third."""
    x, w, _ = _inputs("stride2", seed=3)
    gy = torch.randn(F.conv2d(x, w, stride=2, padding=1).shape, dtype=torch.float64)

    def first(x, w):
        return torch.autograd.grad(conv2d_train(x, w, None, 2, 1), (x, w), gy, create_graph=True)

    assert torch.autograd.gradgradcheck(first, (x, w))


def test_channels_last_stays_channels_last():
    x, w, _ = _inputs("3x3", channels_last=True)
    y = conv2d_train(x, w, None, 1, 1)
    gy = torch.randn(y.shape, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    gx, gw = torch.autograd.grad(y, (x, w), gy, create_graph=True)
    ggx = torch.randn(gx.shape, dtype=torch.float64)  # NCHW cotangent: put in x's format first
    g_x, g_w = torch.autograd.grad((gx * ggx).sum() + (gw * gw).sum(), (x, w))
    for t in (y, gx, g_x):
        assert t.is_contiguous(memory_format=torch.channels_last)
