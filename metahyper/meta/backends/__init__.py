"""Meta-step backends, by name: how forwards and inner gradients are computed (same results).

A new backend is one module with a :class:`Backend` subclass plus one line in :data:`BACKENDS`.
"""

from metahyper.meta.backends.base import Backend, Mode, Observer, Task, TaskOutcome
from metahyper.meta.backends.func import FuncBackend
from metahyper.meta.backends.higher import HigherBackend
from metahyper.meta.backends.vmap import VmapBackend

BACKENDS: dict[str, type[Backend]] = {
    "func": FuncBackend,
    "vmap": VmapBackend,
    "higher": HigherBackend,
}

__all__ = [
    "BACKENDS",
    "Backend",
    "FuncBackend",
    "HigherBackend",
    "Mode",
    "Observer",
    "Task",
    "TaskOutcome",
    "VmapBackend",
]
