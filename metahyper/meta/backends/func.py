"""The default backend: tasks one by one, :func:`torch.func.functional_call` forwards,
:func:`torch.autograd.grad` inner gradients; each task's graph is released by its backward before
the next task starts, so peak memory is one task's.

On a CPU it also runs the images in ``channels_last`` (oneDNN's convolutions work in that layout;
activations follow their input's format) and the second-order inner loop, where every backward is
differentiated again, under :class:`~metahyper.meta.kernels.MetaKernels` (our BatchNorm and
convolution double backwards). Both change rounding only; why and by how much:
``docs/performance.md``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import torch
from torch import Tensor

from metahyper.meta.backends.base import Backend, Mode
from metahyper.meta.kernels import MetaKernels


class FuncBackend(Backend):
    name = "func"

    def _on_cpu(self) -> bool:
        return next(self.model.parameters()).device.type == "cpu"

    def images(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and self._on_cpu():
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def inner_context(self, mode: Mode, x: Tensor) -> AbstractContextManager[Any]:
        if mode is Mode.SECOND and self._on_cpu():
            return MetaKernels()
        return nullcontext()

    def recompute_context(self, mode: Mode, x: Tensor) -> AbstractContextManager[Any]:
        stack = ExitStack()
        stack.enter_context(self.settings())
        stack.enter_context(self.task_context())
        stack.enter_context(self.inner_context(mode, x))
        return stack
