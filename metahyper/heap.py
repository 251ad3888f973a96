"""CPU heap policy: keep memory freed between tasks in the C heap instead of returning it to the OS.

A meta-step allocates and frees the same few hundred MB for every task (activations, the inner
loop's graph). glibc's malloc returns freed memory at the top of its heap to the OS once more than
its trim threshold is free, and its dynamic thresholds follow the largest block freed so far
(tens of MB), so every task maps the memory again and touches it through fresh page faults: about
75 000 faults per WRN-16-2 1-shot second-order meta-step; without them that step was 2-4.5% faster
on 2 cores (measured: README, "Speed"). :func:`retain_heap` raises both thresholds, as PyTorch's
CUDA caching allocator keeps memory on the GPU: blocks below ``mmap_threshold`` come from the heap, and up to
``trim_threshold`` of free heap is kept for the next task. The cost is resident memory: the
process keeps its peak heap (plus fragmentation) after a task ends.

:class:`metahyper.meta.MAML` on a CPU and the command line call it once per process. It does
nothing on a C library other than glibc, when ``METAHYPER_HEAP=system``, or when the user set
glibc's own malloc variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``GLIBC_TUNABLES`` with ``glibc.malloc``), which then win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 32 * 2**20  # glibc's own cap for its dynamic threshold
TRIM_THRESHOLD = 2**30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_applied: bool | None = None  # None: not tried yet in this process


def _user_policy() -> bool:
    """Whether the user chose the malloc policy (then it is left alone)."""
    if os.environ.get("METAHYPER_HEAP", "").lower() == "system":
        return True
    names = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
    return any(n in os.environ for n in names) or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only; other C libraries' mallopt differ or are absent
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def retain_heap(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply the policy (once per process; later calls return the first call's result). True when
    glibc took both thresholds. Values are bytes below 2 GiB (``mallopt`` takes an int)."""
    global _applied
    if _applied is None:
        libc = None if _user_policy() else _glibc()
        _applied = bool(libc) and all(
            libc.mallopt(param, min(value, 2**31 - 1)) == 1
            for param, value in ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold))
        )
    return _applied
