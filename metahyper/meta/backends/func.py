"""The default backend: tasks one by one, :func:`torch.func.functional_call` forwards,
:func:`torch.autograd.grad` inner gradients; each task's graph is released by its backward before
the next task starts, so peak memory is one task's.

On a CPU it also runs the images in ``channels_last`` (oneDNN's convolutions work in that layout;
activations follow their input's format) and the forwards under
:class:`~metahyper.meta.kernels.MetaKernels`: batch-statistics BatchNorms everywhere and, in the
second-order inner loop, convolutions, with our double backwards. Both change rounding only; why
and by how much: ``docs/performance.md``.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from typing import Any, ContextManager

import torch
from torch import Tensor

from metahyper.meta.backends.base import Backend
from metahyper.meta.kernels import MetaKernels


class FuncBackend(Backend):
    name = "func"

    def _on_cpu(self) -> bool:
        return next(self.model.parameters()).device.type == "cpu"

    def images(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and self._on_cpu():
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def task_context(self) -> ContextManager[Any]:
        return MetaKernels(conv=False) if self._on_cpu() else nullcontext()

    def inner_context(self, mode: str, x: Tensor) -> ContextManager[Any]:
        if mode == "second" and self._on_cpu():
            return MetaKernels(conv=True)
        return nullcontext()

    def recompute_context(self, mode: str, x: Tensor) -> ContextManager[Any]:
        stack = ExitStack()
        stack.enter_context(self.settings())
        stack.enter_context(self.task_context())
        stack.enter_context(self.inner_context(mode, x))
        return stack
