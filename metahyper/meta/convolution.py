"""Convolution inside the second-order meta-gradient: the same forward and backward kernels as
``F.conv2d``, a double backward of our own.

Second-order MAML (paper section 4, Algorithm 2) differentiates the backward of every convolution
of the inner loop once more. For cotangents ``(ggx, ggw)`` of the convolution's gradients
``gx = dconv_x(gy, w)`` and ``gw = dconv_w(x, gy)``, the double backward returns

* d/d gy = ``conv(ggx, w) + conv(x, ggw)``,
* d/d x  = ``dconv_x(gy, ggw)``: the input gradient of ``gy`` through the weight ``ggw``,
* d/d w  = ``dconv_w(ggx, gy)``: the weight gradient of ``gy`` against the input ``ggx``.

PyTorch's ``_convolution_double_backward`` computes d/d w as a convolution of the batch-transposed
tensors (``ggx^T`` with ``gy^T`` as a filter as large as the image), which CPU kernels run slowly.
Here d/d w is the backward-weights kernel (``convolution_backward`` with only the weight
gradient), d/d x the transposed convolution PyTorch uses too, and ``ggx`` is first put in the
memory format of ``x`` (a mixed-format convolution converts inside). Same FLOPs; measurements in
``docs/performance.md``.

:func:`conv2d_train` is ``F.conv2d`` with this double backward. Differentiated a third time it is
exact too (the double backward is made of differentiable aten ops of saved inputs).
:class:`metahyper.meta.kernels.MetaKernels` routes a meta-step's convolutions through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_aten = torch.ops.aten
_Params = tuple[list[int], list[int], list[int], int]  # stride, padding, dilation, groups


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(u) for u in v]


def _conv(x: Tensor, w: Tensor, p: _Params) -> Tensor:
    stride, padding, dilation, groups = p
    return _aten.convolution(x, w, None, stride, padding, dilation, False, [0, 0], groups)


def _conv_backward(
    gy: Tensor, x: Tensor, w: Tensor, p: _Params, mask: list[bool]
) -> tuple[Tensor | None, Tensor | None]:
    stride, padding, dilation, groups = p
    gx, gw, _ = _aten.convolution_backward(
        gy, x, w, None, stride, padding, dilation, False, [0, 0], groups, mask + [False]
    )
    return gx, gw


class _Conv2dTrain(torch.autograd.Function):
    """``y = conv(x, w) (+ b)``; backward through :class:`_Conv2dTrainBackward`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, p: _Params) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.p = p
        y = _conv(x, weight, p)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_w, needs_b = ctx.needs_input_grad[:3]
        gx, gw = _Conv2dTrainBackward.apply(gy, x, weight, ctx.p, needs_x, needs_w)
        gb = gy.sum((0, 2, 3)) if needs_b else None
        return gx, gw, gb, None


class _Conv2dTrainBackward(torch.autograd.Function):
    """``(gx, gw) = convolution_backward(gy, x, w)``; its backward is the double backward of the
    module docstring."""

    @staticmethod
    def forward(ctx, gy: Tensor, x: Tensor, weight: Tensor, p: _Params, needs_x: bool, needs_w: bool):
        ctx.save_for_backward(gy, x, weight)
        ctx.p = p
        return _conv_backward(gy, x, weight, p, [needs_x, needs_w])

    @staticmethod
    def backward(ctx, ggx: Tensor | None, ggw: Tensor | None):
        gy, x, weight = ctx.saved_tensors
        p = ctx.p
        stride, padding, dilation, groups = p
        g_gy = g_x = g_w = None
        if ggx is not None:
            fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            ggx = ggx.contiguous(memory_format=fmt)
            g_gy = _conv(ggx, weight, p)
            if ctx.needs_input_grad[2]:
                _, g_w = _conv_backward(gy, ggx, weight, p, [False, True])
        if ggw is not None:
            term = _conv(x, ggw, p)
            g_gy = term if g_gy is None else g_gy + term
            if ctx.needs_input_grad[1]:  # the transposed convolution of gy with ggw, sized like x
                out_pad = [
                    x.shape[2 + i]
                    - ((gy.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + 1)
                    for i in range(2)
                ]
                g_x = _aten.convolution(gy, ggw, None, stride, padding, dilation, True, out_pad, groups)
        return g_gy, g_x, g_w, None, None, None


def conv2d_train(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` (batched 4-D ``x``, numeric
    padding) with the double backward of the module docstring."""
    return _Conv2dTrain.apply(x, weight, bias, (_pair(stride), _pair(padding), _pair(dilation), int(groups)))
