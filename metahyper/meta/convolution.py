"""Convolution inside the second-order meta-gradient: the same forward and backward kernels as
``F.conv2d``, a double backward of our own (issue 5, "fast meta-step").

Second-order MAML (paper section 4, Algorithm 2) differentiates the backward of every convolution
of the inner loop once more. For cotangents ``(ggx, ggw)`` of the convolution's gradients
``gx = dconv_x(gy, w)`` and ``gw = dconv_w(x, gy)``, the double backward returns

* d/d gy = ``conv(ggx, w) + conv(x, ggw)``,
* d/d x  = ``dconv_x(gy, ggw)``: the input gradient of ``gy`` through the weight ``ggw``,
* d/d w  = ``dconv_w(ggx, gy)``: the weight gradient of ``gy`` against the input ``ggx``.

PyTorch (``_convolution_double_backward``, torch 2.14) computes d/d w as a convolution of the
batch-transposed tensors (``ggx^T`` with ``gy^T`` as a filter as large as the image): on a CPU
that runs at 49-139 GFLOP/s where oneDNN's backward-weights kernel runs at 140-205 (2 cores, the
WRN-16-2 shapes at 5 and 25 images, channels_last). Here d/d w is that kernel
(``convolution_backward`` with only the weight gradient), d/d x the transposed convolution PyTorch
uses too, and ``ggx`` is first put in the memory format of ``x`` (a mixed-format convolution
converts inside). Same FLOPs; measured: README, "Speed".

* :func:`conv2d_train`: ``F.conv2d`` with this double backward. Differentiated a third time it
  is exact too (the double backward is made of differentiable aten ops of saved inputs).
* :func:`conv_double_backward`: inside the block every ``nn.Conv2d`` (zero padding) and
  :class:`~metahyper.models.layers.HyperConv2d` of a model convolves with :func:`conv2d_train`
  (batched inputs, outside autocast: there ``F.conv2d`` casts, the Function would not).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Sequence

import torch
from torch import Tensor, nn

from metahyper.meta.patching import instance_methods
from metahyper.models.layers import HyperConv2d

_aten = torch.ops.aten
_Params = tuple[list[int], list[int], list[int], int]  # stride, padding, dilation, groups


def _pair(v: int | Sequence[int]) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(u) for u in v]


def _conv(x: Tensor, w: Tensor, p: _Params) -> Tensor:
    stride, padding, dilation, groups = p
    return _aten.convolution(x, w, None, stride, padding, dilation, False, [0, 0], groups)


def _conv_backward(gy: Tensor, x: Tensor, w: Tensor, p: _Params, mask: list[bool]) -> tuple[Tensor | None, Tensor | None]:
    stride, padding, dilation, groups = p
    gx, gw, _ = _aten.convolution_backward(gy, x, w, None, stride, padding, dilation, False, [0, 0], groups, mask + [False])
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
                out_pad = [x.shape[2 + i] - ((gy.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                             + dilation[i] * (weight.shape[2 + i] - 1) + 1) for i in range(2)]
                g_x = _aten.convolution(gy, ggw, None, stride, padding, dilation, True, out_pad, groups)
        return g_gy, g_x, g_w, None, None, None


def conv2d_train(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1,
) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups)`` (batched 4-D ``x``, numeric
    padding) with the double backward of the module docstring."""
    return _Conv2dTrain.apply(x, weight, bias, (_pair(stride), _pair(padding), _pair(dilation), int(groups)))


def _convs(model: nn.Module) -> list[nn.Module]:
    """The convolutions :func:`conv_double_backward` swaps: hyper layers, and 2-D convs with
    numeric zero padding."""
    return [m for m in model.modules() if isinstance(m, HyperConv2d)
            or (isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str))]


def _train_conv_forward(conv: nn.Module):
    """``conv``'s ``_conv_forward(x, weight, bias)`` through :func:`conv2d_train`."""
    dilation, groups = getattr(conv, "dilation", 1), getattr(conv, "groups", 1)

    def _conv_forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if x.dim() != 4 or torch.is_autocast_enabled(x.device.type):  # unbatched or autocast: the class path
            return type(conv)._conv_forward(conv, x, weight, bias)
        return conv2d_train(x, weight, bias, conv.stride, conv.padding, dilation, groups)

    return _conv_forward


def conv_double_backward(model: nn.Module) -> AbstractContextManager[None]:
    """Inside the block every convolution of ``model`` (:func:`_convs`) uses
    :func:`conv2d_train`; the class method is restored on exit."""
    return instance_methods(_convs(model), "_conv_forward", _train_conv_forward)
