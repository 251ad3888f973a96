"""Atomic file writes, JSON and CSV: the bottom layer (imports nothing of metahyper but its errors).

Every file that matters is written through :func:`atomic_files` (or its one-file form
:func:`atomic_path`): the content goes to a temporary file beside the target, is fsynced and then
renamed over the target, so a killed process leaves either the old file or the new one, never a
half-written one. Temporary files are named ``.<target>.<pid>-<random>.tmp``; those of processes
that are gone (killed with SIGKILL, power loss) are removed the next time the same target is
written. A full disk, or a location that cannot be written, ends in a one-line
:class:`~metahyper.errors.UserError` with nothing replaced.

Every JSON or CSV file the toolkit reads back goes through :func:`read_json` / :func:`read_csv`
(JSON held elsewhere, such as an HDF5 attribute or a log line: :func:`parse_json`): the size is
checked before the file is read, the nesting depth is bounded, the types of the fields the caller
uses are checked, and every fault is one line naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from metahyper.errors import UserError

_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_files` left beside ``target`` in processes
    that no longer exist on this machine; returns the removed paths. Live writers are left alone."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for path in target.parent.iterdir():
        m = _TMP_NAME.match(path.name)
        if m and m["target"] == target.name and not _process_alive(int(m["pid"])):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(folder: str | os.PathLike, nbytes: int, what: str) -> None:
    """A :class:`UserError` when the filesystem of ``folder`` (or of its nearest existing parent)
    has less than ``nbytes`` free; ``what`` names what would be written."""
    where = _existing_ancestor(Path(folder))
    if where.is_file():
        raise UserError(f"{where} is a file, not a folder; cannot write {what} under it; choose another location")
    free = shutil.disk_usage(where).free
    if nbytes > free:
        raise UserError(
            f"not enough disk space for {what} in {folder}: about {_mb(nbytes)} needed, {_mb(free)} free; "
            "free some space or choose another location"
        )


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB"


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-space (or out-of-quota) error, also as wrapped by libraries
    that keep only the message (h5py)."""
    if isinstance(err, OSError) and err.errno in _DISK_FULL:
        return True
    return any(os.strerror(code) in str(err) for code in _DISK_FULL)


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], size: int | None = None) -> Iterator[list[Path]]:
    """Yield one temporary path beside each of ``paths`` (parents are created). When the block
    succeeds every temporary file is fsynced and renamed over its target; when it raises, the
    temporary files are removed and the targets are left untouched (all of them, as one unit: no
    target is renamed before every file is complete).

    ``size``: the bytes the block will write in all; when given, a :class:`UserError` is raised
    before anything is written if the disk has less free. Running out of space inside the block,
    or targets that cannot be created (permissions, a read-only filesystem), raise a
    :class:`UserError`. Stale temporary files of dead processes for the same targets are removed
    first. New files get the usual mode (0666 less the umask).
    """
    targets = [Path(p) for p in paths]
    for target in targets:
        remove_stale_temporaries(target)
    if size is not None and targets:
        check_free_space(
            targets[0].parent, size, ", ".join(t.name for t in targets[:3]) + (" ..." if len(targets) > 3 else "")
        )
    tmps: list[Path] = []
    try:
        try:
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
                os.close(
                    os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                )  # the umask applies, as to any new file
                tmps.append(tmp)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise UserError(
                    f"cannot write {err.filename or targets[0]}: {err.strerror}; choose another location"
                ) from None
            raise
        yield list(tmps)
        for tmp in tmps:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, target in zip(tmps, targets):
            os.replace(tmp, target)
    except Exception as err:
        if is_disk_full(err):
            folder = targets[0].parent if targets else Path(".")
            what = targets[0].name if len(targets) == 1 else f"{len(targets)} files"
            raise UserError(
                f"disk full while writing {what} in {folder}; "
                "nothing was replaced; free some space or choose another location"
            ) from None
        raise
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_files` for one file: yield a temporary path that replaces ``path`` on success."""
    with atomic_files([path]) as (tmp,):
        yield tmp


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV atomically (columns: ``fields``, or the union of the rows' keys in
    first-seen order; keys outside ``fields`` are dropped)."""
    rows = list(rows)
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


MAX_READ_BYTES = 256 * 2**20
"""The largest JSON or CSV file :func:`read_json` / :func:`read_csv` read (by default)."""
MAX_JSON_DEPTH = 100
"""The deepest nesting of lists and objects :func:`parse_json` accepts (by default)."""

Types = type | tuple[type, ...]
_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true/false",
}


def _type_name(types: Types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is(value: Any, types: Types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:  # JSON true is not a number
        return False
    return isinstance(value, types)


def _too_deep(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests lists and dicts more than ``limit`` levels deep (without recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def file_error(where: str, problem: str, fix: str) -> UserError:
    """The one-line :class:`UserError` ``<where> <problem>; <fix>`` of a file read back (an empty
    ``fix``: ``<where> <problem>``, for callers that gather several files' problems)."""
    return UserError(f"{where} {problem}; {fix}" if fix else f"{where} {problem}")


def check_fields(data: Any, fields: Mapping[str, Types], where: str, fix: str) -> None:
    """A one-line :class:`UserError` (``where ...; fix``) unless ``data`` is an object holding every
    key of ``fields`` with a value of its type(s) (``bool`` counts as a number only where listed)."""
    if not isinstance(data, dict):
        raise file_error(where, f"holds {_type_name(type(data))}, expected an object", fix)
    missing = [k for k in fields if k not in data]
    if missing:
        raise file_error(where, f"lacks {', '.join(map(repr, missing))}", fix)
    for key, types in fields.items():
        if not _is(data[key], types):
            shown = repr(data[key]) if len(repr(data[key])) <= 40 else _type_name(type(data[key]))
            raise file_error(where + ":", f"{key!r} is {shown}, expected {_type_name(types)}", fix)


def parse_json(
    text: str | bytes,
    where: str,
    fix: str,
    expect: Types = object,
    fields: Mapping[str, Types] | None = None,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """``text`` parsed as JSON, of type ``expect`` and (for objects) with ``fields`` (see
        :func:`check_fields`); anything else (not UTF-8, not JSON, nested more than ``max_depth``
        levels, another type) is a one-line :class:`UserError` ``where <problem>; fix`` (an empty
    ``fix``: ``where <problem>``, for callers that gather several files' problems). Never a
        RecursionError: the parser's own guard is caught and the depth measured without recursion."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8-sig")
        data = json.loads(text)
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise file_error(
            where, f"is not valid JSON (not UTF-8 text: byte {byte:#04x} at offset {err.start})", fix
        ) from None
    except ValueError as err:
        raise file_error(where, f"is not valid JSON ({err})", fix) from None
    except RecursionError:  # nested far deeper than max_depth
        raise file_error(where, f"is nested more than {max_depth} levels deep", fix) from None
    if _too_deep(data, max_depth):
        raise file_error(where, f"is nested more than {max_depth} levels deep", fix)
    if not _is(data, expect):
        raise file_error(where, f"holds {_type_name(type(data))}, expected {_type_name(expect)}", fix)
    if fields is not None:
        check_fields(data, fields, where, fix)
    return data


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _read_bounded(path: Path, where: str, fix: str, max_bytes: int) -> bytes:
    """The bytes of ``path``, refused in one line when it is missing, unreadable or over ``max_bytes``."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(size + 1) if size <= max_bytes else b""  # not a max_bytes buffer
    except OSError as err:
        raise file_error(where, f"cannot be read ({err.strerror or err})", fix) from None
    if size > max_bytes or len(data) > max_bytes:
        raise file_error(where, f"is {_size(max(size, len(data)))}, more than the {_size(max_bytes)} allowed", fix)
    return data


def read_json(
    path: str | os.PathLike,
    what: str,
    fix: str,
    expect: Types = object,
    fields: Mapping[str, Types] | None = None,
    max_bytes: int = MAX_READ_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """The JSON file ``path``, read back: its size is checked before it is read, then it is
    parsed by :func:`parse_json`. Every fault is one :class:`UserError` line ``<what> <path>
    <problem>; <fix>`` (``what``: e.g. ``"labels file"``, ``"--config"``)."""
    where = f"{what} {path}" if what else str(path)
    return parse_json(_read_bounded(Path(path), where, fix, max_bytes), where, fix, expect, fields, max_depth)


def read_csv(
    path: str | os.PathLike,
    what: str = "CSV file",
    fix: str = "rewrite or remove it",
    columns: Sequence[str] = (),
    max_bytes: int = MAX_READ_BYTES,
) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts of strings; its size is checked before it is
    read, and its header must hold ``columns``. A file that is too large, not UTF-8, not CSV
    (a NUL byte, an oversized field) or lacks a column is one :class:`UserError` line
    ``<what> <path> <problem>; <fix>``. Short rows have None values, long rows a None key."""
    where = f"{what} {path}"
    data = _read_bounded(Path(path), where, fix, max_bytes)
    try:
        text = data.decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except UnicodeDecodeError as err:
        byte = err.object[err.start]
        raise file_error(
            where, f"is not valid CSV (not UTF-8 text: byte {byte:#04x} at offset {err.start})", fix
        ) from None
    except csv.Error as err:
        raise file_error(where, f"is not valid CSV ({err})", fix) from None
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise file_error(where, f"lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}", fix)
    return rows
