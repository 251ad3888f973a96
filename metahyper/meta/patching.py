"""Per-instance method overrides for the duration of a block: how the meta-learner swaps in the
layers whose double backward is ours (:mod:`metahyper.meta.batchnorm`,
:mod:`metahyper.meta.convolution`) without touching the model's classes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from torch import nn


@contextmanager
def instance_methods(modules: Iterable[nn.Module], name: str, make: Callable[[nn.Module], Callable[..., Any]]) -> Iterator[None]:
    """Inside the block each module has the instance attribute ``name = make(module)`` (it shadows
    the class's method of that name); removed on exit, so the class's method applies again."""
    modules = list(modules)
    try:
        for m in modules:
            m.__dict__[name] = make(m)
        yield
    finally:
        for m in modules:
            m.__dict__.pop(name, None)
