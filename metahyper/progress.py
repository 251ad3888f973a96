"""Progress display: a tqdm bar on a terminal, plain log lines otherwise (the one place that decides).

:func:`progress_bar` takes tqdm's common arguments and returns an object with tqdm's common methods
(iteration, ``update``, ``set_postfix``, ``close``, context manager). When stderr is not a
terminal (a log file, a pipe, CI) no carriage-return bar is drawn: a ``leave=True`` bar writes one
line at every tenth of its total (and at the end), a ``leave=False`` bar (per-epoch inner bars,
whose caller logs its own summary line) writes nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class LineProgress:
    """tqdm's interface, printed as whole lines: ``desc: n/total unit (s s) postfix``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        total: int | None = None,
        desc: str | None = None,
        unit: str = "it",
        initial: int = 0,
        leave: bool = True,
        disable: bool = False,
        file: TextIO | None = None,
        steps: int = 10,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.silent = disable or not leave
        self.file = file
        self.steps = steps
        self.postfix = ""
        self._start = time.monotonic()
        self._shown = initial
        self._closed = False

    def _line(self) -> None:
        stream = self.file if self.file is not None else sys.stderr
        total = f"/{self.total}" if self.total else ""
        head = f"{self.desc}: " if self.desc else ""
        tail = f" {self.postfix}" if self.postfix else ""
        print(
            f"{head}{self.n}{total} {self.unit} ({time.monotonic() - self._start:.1f} s){tail}", file=stream, flush=True
        )
        self._shown = self.n

    def update(self, n: int = 1) -> bool | None:
        self.n += n
        if self.silent:
            return None
        every = -(-self.total // self.steps) if self.total else None  # ceil: at most `steps` lines
        if every is not None and (self.n // every > self._shown // every or self._shown < self.total <= self.n):
            self._line()
        return None

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self._closed and not self.silent and self.n != self._shown:
            self._line()
        self._closed = True

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    initial: int = 0,
    leave: bool = True,
    disable: bool = False,
    file: TextIO | None = None,
) -> tqdm | LineProgress:
    """A progress bar over ``iterable`` (or one updated by hand): tqdm when the output stream
    (``file``, default stderr) is a terminal, else a :class:`LineProgress`."""
    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable, file=file
        )
    return LineProgress(
        iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=disable, file=file
    )
