"""BatchNorm inside the meta-learner: the modes of :class:`~metahyper.meta.MAML` and the
batch-statistics BatchNorm whose second derivative it differentiates. The paper does not say how
BatchNorm behaves inside tasks; batch statistics (``transductive``) is our default, as in MAML's
public code and the higher / learn2learn examples.

* :func:`batchnorm_mode`: ``"transductive"`` (batch statistics, running statistics untouched) or
  ``"frozen"`` (running statistics), for the duration of a block.
* :func:`batch_norm_train`: BatchNorm with batch statistics, the same forward and backward kernels
  as ``F.batch_norm`` (``native_batch_norm`` / ``native_batch_norm_backward``) but a double
  backward of our own. Second-order MAML differentiates every BatchNorm backward of the inner loop
  once more; PyTorch's double backward (``batchnorm_double_backward``) takes ~25 elementwise ops
  and reduces over one dimension at a time (``sum(0)``, then ``sum(3)``, then ``sum(2)``), which
  in ``channels_last`` produces NCHW tensors and strided reductions. Ours computes the same
  derivatives with five per-channel reductions over ``(0, 2, 3)`` and three fused passes, in the
  memory format of its inputs. Checked by ``gradgradcheck`` (third derivatives too: differentiated
  once more, the double backward recomputes the statistics from ``x`` under autograd) and against
  ``F.batch_norm`` in float64.
  :class:`metahyper.meta.kernels.MetaKernels` routes a meta-step's batch-statistics BatchNorms
  through it.

Derivation (per channel, ``m`` elements, ``xhat = (x - mean) * invstd``, ``y = w * xhat + b``):
``gx = w * invstd * P(gy)`` with ``P(v) = v - mean(v) - xhat * mean(v * xhat)`` (self-adjoint),
``gw = sum(gy * xhat)``, ``gb = sum(gy)``. For cotangents ``(ggx, ggw, ggb)`` of ``(gx, gw, gb)``:

* d/d gy = ``w * invstd * P(ggx) + ggw * xhat + ggb``
* d/d w  = ``invstd * sum(ggx * P(gy))``
* d/d x  = ``ggw * invstd * P(gy) - w * invstd^2 * (A * xhat / m + S / m * (P(gy) - c2 * xhat)
  + c2 * P(ggx))``, with ``A = sum(ggx * gy) - mean(gy) * sum(ggx)``, ``S = sum(ggx * xhat)``,
  ``c2 = mean(gy * xhat)``,

using ``d xhat_j / d x_i = invstd * (delta_ij - 1/m - xhat_i * xhat_j / m)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from metahyper.errors import UserError

BN_MODES = ("transductive", "frozen")


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def batchnorm_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Inside the block every BatchNorm of ``model`` runs in ``mode``: ``transductive``: batch
    statistics, running statistics untouched; ``frozen``: running statistics. Flags are restored on
    exit."""
    if mode not in BN_MODES:
        raise UserError(f"unknown batch-norm mode {mode!r}; choose from {', '.join(BN_MODES)}")
    bns = _bns(model)
    saved = [(m.training, m.track_running_stats) for m in bns]
    try:
        for m in bns:
            if mode == "transductive":
                m.training = True
                m.track_running_stats = False
            else:
                m.training = False
        yield
    finally:
        for m, (training, track) in zip(bns, saved):
            m.training, m.track_running_stats = training, track


# --------------------------------------------------------------------------------------------
# Batch-statistics BatchNorm with our double backward
# --------------------------------------------------------------------------------------------


def _per_channel(v: Tensor, like: Tensor) -> Tensor:
    """A per-channel vector ``[C]`` as ``[1, C, 1, ...]``, broadcastable against ``like``."""
    return v.reshape((1, -1) + (1,) * (like.dim() - 2))


def _reduce_dims(x: Tensor) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.dim()))


class _BatchNormTrain(torch.autograd.Function):
    """``y = native_batch_norm(x, w, b)`` with batch statistics; backward through
    :class:`_BatchNormTrainBackward` (so that its derivative is ours)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = _BatchNormTrainBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        return gx, gw, gb, None


class _BatchNormTrainBackward(torch.autograd.Function):
    """``(gx, gw, gb) = native_batch_norm_backward(gy, x, w)``; its backward is the double backward
    of the module docstring (mean and invstd are functions of x there, not inputs)."""

    @staticmethod
    def forward(ctx, gy: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float):
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)
        ctx.eps = eps
        return gx, gw, gb

    @staticmethod
    def backward(ctx, ggx: Tensor | None, ggw: Tensor | None, ggb: Tensor | None):
        gy, x, weight, mean, invstd, sum_gy_xhat, sum_gy = ctx.saved_tensors
        dims, m = _reduce_dims(x), x.numel() // x.shape[1]
        c = lambda v: _per_channel(v, x)  # noqa: E731
        if torch.is_grad_enabled():  # differentiated once more: the statistics as functions of x, gy
            mean = x.mean(dims, dtype=invstd.dtype)
            invstd = torch.rsqrt((x - c(mean)).pow(2).mean(dims, dtype=invstd.dtype) + ctx.eps)
            xhat = (x - c(mean)) * c(invstd)
            sum_gy, sum_gy_xhat = gy.sum(dims, dtype=invstd.dtype), (gy * xhat).sum(dims, dtype=invstd.dtype)
        else:
            xhat = (x - c(mean)) * c(invstd)
        c1, c2 = sum_gy / m, sum_gy_xhat / m  # mean(gy), mean(gy * xhat)
        zero = torch.zeros_like(invstd)
        # g_gy = d1 * ggx + d2 * xhat + d3;  g_x = a * P(gy) + b * xhat + k * P(ggx)
        d2, d3, a, b, k = zero, zero, zero, zero, zero
        g_w = None
        if ggx is not None:
            s_ggx = ggx.sum(dims, dtype=invstd.dtype)
            s_ggx_xhat = (ggx * xhat).sum(dims, dtype=invstd.dtype)
            big_a = (ggx * gy).sum(dims, dtype=invstd.dtype) - c1 * s_ggx
            m_ggx, m_ggx_xhat = s_ggx / m, s_ggx_xhat / m  # mean(ggx), mean(ggx * xhat)
            w_inv = weight * invstd
            w_inv2 = w_inv * invstd
            d2, d3 = -w_inv * m_ggx_xhat, -w_inv * m_ggx  # w * invstd * P(ggx), less w * invstd * ggx
            g_w = invstd * (big_a - c2 * s_ggx_xhat)
            a = -w_inv2 * m_ggx_xhat
            b = -w_inv2 * (big_a - s_ggx_xhat * c2) / m
            k = -w_inv2 * c2
        if ggw is not None:
            d2 = d2 + ggw
            a = a + ggw * invstd
        if ggb is not None:
            d3 = d3 + ggb
        g_gy = torch.addcmul(c(d3), c(d2), xhat)
        if ggx is not None:
            g_gy = g_gy.addcmul_(c(w_inv), ggx)
        g_x = None
        if ggx is not None or ggw is not None:
            # a * P(gy) + k * P(ggx)
            #   = a * gy + k * ggx - (a * c2 + k * mean(ggx * xhat)) * xhat - a * c1 - k * mean(ggx)
            e_x, e_0 = b - a * c2, -a * c1
            if ggx is not None:
                e_x, e_0 = e_x - k * m_ggx_xhat, e_0 - k * m_ggx
            g_x = torch.addcmul(c(e_0), c(e_x), xhat).addcmul_(c(a), gy)
            if ggx is not None:
                g_x = g_x.addcmul_(c(k), ggx)
        return (
            g_gy.to(gy.dtype),
            None if g_x is None else g_x.to(x.dtype),
            None if g_w is None else g_w.to(weight.dtype),
            None,
            None,
            None,
        )


def batch_norm_train(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """BatchNorm with the statistics of the batch ``x`` (``[N, C, ...]``) and affine ``weight``,
    ``bias``: the value and first derivatives of ``F.batch_norm(x, None, None, weight, bias, True,
    eps=eps)``, with the double backward of the module docstring."""
    return _BatchNormTrain.apply(x, weight, bias, eps)
