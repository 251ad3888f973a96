"""Which kernels a meta-step's forwards use, chosen by a :class:`~torch.overrides.TorchFunctionMode`.

Second-order MAML differentiates the backward of every layer of the inner loop once more.
:class:`MetaKernels` routes, for the duration of a block and on the calling thread only:

* with ``batchnorm=True``, every BatchNorm that normalises with the batch's statistics and tracks
  none (``F.batch_norm(x, None, None, w, b, training=True)``: the transductive mode of
  :func:`metahyper.meta.batchnorm.batchnorm_mode`) through
  :func:`metahyper.meta.batchnorm.batch_norm_train`;
* with ``conv=True``, every batched 2-D convolution with numeric padding whose input is larger
  than its kernel through :func:`metahyper.meta.convolution.conv2d_train`. Smaller inputs (a
  hypernetwork's k x k embeddings) keep PyTorch's double backward, whose weight term is a
  convolution with the input as its filter: cheap when that filter is small. Autocast keeps
  ``F.conv2d`` (it casts; the Function would not).

Only worth it where a backward is differentiated again: elsewhere PyTorch's kernels are as fast
or faster (``docs/performance.md``).

Same values and derivatives (float64: equal to rounding); only speed differs. It works on any
``nn.Module`` that calls ``F.batch_norm`` / ``F.conv2d`` (every torch.nn BatchNorm and Conv2d).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from metahyper.meta.batchnorm import batch_norm_train
from metahyper.meta.convolution import conv2d_train

_BN = inspect.signature(F.batch_norm)
_CONV = inspect.signature(lambda input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1: None)


class MetaKernels(TorchFunctionMode):
    """Inside ``with MetaKernels():`` batch-statistics BatchNorms and 2-D convolutions run with our
    double backwards (see the module docstring); either can be left to PyTorch."""

    def __init__(self, batchnorm: bool = True, conv: bool = True) -> None:
        super().__init__()
        self.batchnorm, self.conv = batchnorm, conv

    def __torch_function__(self, func, types, args=(), kwargs=None) -> Any:
        kwargs = kwargs or {}
        if self.batchnorm and func is F.batch_norm:
            a = _BN.bind(*args, **kwargs).arguments
            if (
                a.get("training")
                and a["running_mean"] is None
                and a["running_var"] is None
                and a.get("weight") is not None
                and a.get("bias") is not None
            ):
                return batch_norm_train(a["input"], a["weight"], a["bias"], a.get("eps", 1e-5))
        elif self.conv and func is F.conv2d:
            a = _CONV.bind(*args, **kwargs).arguments
            x, w = a["input"], a["weight"]
            if (
                x.dim() == 4
                and not isinstance(a.get("padding", 0), str)
                and x.shape[2] * x.shape[3] > w.shape[2] * w.shape[3]
                and not torch.is_autocast_enabled(x.device.type)
            ):
                return conv2d_train(
                    x,
                    w,
                    a.get("bias"),
                    a.get("stride", 1),
                    a.get("padding", 0),
                    a.get("dilation", 1),
                    a.get("groups", 1),
                )
        return func(*args, **kwargs)
