"""The memory a command may plan to use, as the user sets it.

Every memory check (building or loading a cache: ``metahyper.data.writing.check_memory``; a
training or evaluation step: ``metahyper.train.memory.check_memory``) compares its estimate with a
limit, which ``$METAHYPER_MAX_MEMORY_GB`` replaces when set: a lower value keeps a command inside a
share of a machine, a higher one overrides the check.
"""

from __future__ import annotations

import math
import os

from metahyper.errors import UserError

ENV = "METAHYPER_MAX_MEMORY_GB"
GB = 2**30


def memory_override() -> int | None:
    """``$METAHYPER_MAX_MEMORY_GB`` in bytes, None when unset or empty; a value that is not a
    positive number of GB is a one-line :class:`UserError`."""
    value = os.environ.get(ENV)
    if not value:
        return None
    try:
        gb = float(value)
    except ValueError:
        gb = math.nan
    if not math.isfinite(gb) or gb <= 0:
        raise UserError(f"${ENV} must be a positive number of GB, got {value!r}")
    return int(gb * GB)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
