"""Cache builders (``metahyper prepare``) and the restricted unpickler they share.

Only the documented pickle formats are read (CIFAR python pickles, MiniImageNet cache pickles):
:func:`load_pickle` allows nothing but numpy arrays/dtypes and builtin containers, so a crafted
pickle cannot run code, and callers validate types, shapes and dtypes before use.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import IO

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
