"""Cache builders (``metahyper prepare``), the restricted unpickler and the check they share.

Only the documented pickle formats are read (CIFAR python pickles, MiniImageNet cache pickles):
:func:`load_pickle` allows nothing but numpy arrays/dtypes and builtin containers, so a crafted
pickle cannot run code, and callers validate types, shapes and dtypes before use.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import IO, Sequence

import numpy as np

from metahyper.errors import UserError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): dict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 writes bytes at protocol <= 2
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def load_pickle(fileobj: IO[bytes], what: str, encoding: str = "ASCII") -> object:
    """Unpickle a dataset file allowing only numpy arrays and builtin types; errors name ``what``."""
    try:
        return _RestrictedUnpickler(fileobj, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, io.UnsupportedOperation) as err:
        raise UserError(f"{what} is not a valid dataset pickle ({type(err).__name__}: {err}); re-download it") from None


def validate_classes(
    what: str,
    got: dict[str, np.ndarray],
    expect_classes: Sequence[str] | int | None,
    expect_per_class: int | None,
    expect_hw: tuple[int, int] | None,
    fix: str,
) -> None:
    """Check a built split (class names/count, images per class, shape, dtype); say what differs."""
    problems = []
    if isinstance(expect_classes, int):
        if len(got) != expect_classes:
            problems.append(f"{len(got)} classes instead of {expect_classes}")
    elif expect_classes is not None:
        missing = sorted(set(expect_classes) - set(got))
        extra = sorted(set(got) - set(expect_classes))
        if missing:
            problems.append(f"{len(missing)} classes missing (e.g. {', '.join(missing[:3])})")
        if extra:
            problems.append(f"{len(extra)} unexpected classes (e.g. {', '.join(extra[:3])})")
    for name, arr in got.items():
        if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            problems.append(f"class {name}: {getattr(arr, 'shape', type(arr))} {getattr(arr, 'dtype', '')}, not uint8 (n,H,W,3)")
            break
        if expect_hw is not None and tuple(arr.shape[1:3]) != tuple(expect_hw):
            problems.append(f"class {name}: images {arr.shape[1]}x{arr.shape[2]} instead of {expect_hw[0]}x{expect_hw[1]}")
            break
        if expect_per_class is not None and arr.shape[0] != expect_per_class:
            problems.append(f"class {name}: {arr.shape[0]} images instead of {expect_per_class}")
            break
    if problems:
        raise UserError(f"{what}: {'; '.join(problems)}; {fix}")
