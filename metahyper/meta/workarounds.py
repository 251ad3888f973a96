"""PyTorch bugs the meta-learner works around: each one here, gated by version, shown by a test.

**vmap BatchNorm second derivatives** (torch <= 2.14 at least): under :func:`torch.func.vmap`,
``F.batch_norm`` in training mode with a per-task (batched) affine weight, i.e. BatchNorm
weight/bias adapted in the inner loop, gives wrong second derivatives w.r.t. the parameters before
it (first derivatives are right). :class:`AffineOutsideBatchNorm` applies the affine part after
``F.batch_norm`` instead: the same value, right derivatives. ``tests/meta/test_workarounds.py``
shows the bug on the installed torch; when it stops reproducing, set :data:`VMAP_BATCHNORM_FIXED_IN`.
"""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

VMAP_BATCHNORM_FIXED_IN: tuple[int, int] | None = None  # first torch (major, minor) without the bug
_BN = inspect.signature(F.batch_norm)


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)


class AffineOutsideBatchNorm(TorchFunctionMode):
    """Inside the block ``F.batch_norm(x, rm, rv, w, b, ...)`` runs as
    ``F.batch_norm(x, rm, rv, None, None, ...) * w + b`` (per channel)."""

    def __torch_function__(self, func, types, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        if func is not F.batch_norm:
            return func(*args, **kwargs)
        a = _BN.bind(*args, **kwargs).arguments
        weight, bias = a.pop("weight", None), a.pop("bias", None)
        out = F.batch_norm(**a)
        shape = (1, -1) + (1,) * (out.dim() - 2)
        if weight is not None:
            out = out * weight.reshape(shape)
        return out if bias is None else out + bias.reshape(shape)


def vmap_batchnorm_workaround() -> AbstractContextManager[Any]:
    """:class:`AffineOutsideBatchNorm` where the installed torch has the bug, else nothing."""
    fixed = VMAP_BATCHNORM_FIXED_IN is not None and _torch_version() >= VMAP_BATCHNORM_FIXED_IN
    return nullcontext() if fixed else AffineOutsideBatchNorm()
