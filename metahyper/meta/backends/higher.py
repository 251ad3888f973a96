"""Backend ``higher``: forwards through the ``higher`` library's functional ("monkey-patched")
copy of the model, one per task, with the parameters passed as a list; the inner SGD steps are
the shared :func:`~metahyper.meta.inner_loop.inner_loop` (the update ``p - lr * grad`` of
``higher.optim.DifferentiableSGD``), differentiating w.r.t. the adapted parameters only.

``higher`` copies every attribute of a module onto its patched copy with ``setattr``. A module
attribute that holds another module without registering it (a reference to a module owned
elsewhere, e.g. a hypernetwork shared by several layers) would then be registered as an
unpatched child and fail. :func:`references_hidden` hides such references while higher patches
and points each patched copy at the patched counterpart of what it referenced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

from metahyper.meta.backends.base import Backend
from metahyper.meta.inner_loop import Forward


def _unregistered_references(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(module path, attribute, referenced module path)`` for every attribute of a submodule of
    ``model`` that holds a module of ``model`` without registering it."""
    paths = {id(m): p for p, m in model.named_modules()}
    return [
        (path, k, paths[id(v)])
        for path, m in model.named_modules()
        for k, v in vars(m).items()
        if isinstance(v, nn.Module) and k not in m._modules and id(v) in paths
    ]


@contextmanager
def references_hidden(model: nn.Module) -> Iterator[Callable[[nn.Module], None]]:
    """Inside the block the unregistered module references of ``model`` are hidden (so that
    ``higher`` can patch it); yields ``relink(fmodel)``, which points each patched copy at the
    patched counterpart of what it referenced."""
    refs = _unregistered_references(model)
    hidden = [vars(model.get_submodule(p)).pop(k) for p, k, _ in refs]

    def relink(fmodel: nn.Module) -> None:
        for p, k, target in refs:
            object.__setattr__(fmodel.get_submodule(p), k, fmodel.get_submodule(target))

    try:
        yield relink
    finally:
        for (p, k, _), v in zip(refs, hidden):
            vars(model.get_submodule(p))[k] = v


def patched(model: nn.Module) -> nn.Module:
    """A higher functional copy of ``model`` that shares its parameters and buffers (no
    fast-weight history)."""
    import higher

    with references_hidden(model) as relink:
        fmodel = higher.patch.monkeypatch(model, copy_initial_weights=False, track_higher_grads=False)
    relink(fmodel)
    for name, module in model.named_modules():  # higher clones buffers: share them (per-step statistics)
        fmodel.get_submodule(name)._buffers.update(module._buffers)
    return fmodel


class HigherBackend(Backend):
    name = "higher"
    _fmodel: nn.Module | None = None

    @contextmanager
    def task_context(self) -> Iterator[Any]:
        self._fmodel = patched(self.model)
        try:
            yield
        finally:
            self._fmodel = None

    def forward_fn(self, constants: Mapping[str, Tensor]) -> Forward:
        fmodel = self._fmodel
        own = dict(self.model.named_parameters())

        def forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
            values = {**constants, **params}
            return fmodel(x, params=[values[n] if n in values else p for n, p in own.items()])

        return forward
