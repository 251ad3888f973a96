"""Output files named by the user (``eval -o``, ``export -o``, the plots' ``-o``): checked before
any work, never silently replacing something else.

:func:`check_output` refuses a path that is a directory or cannot be written, and an existing file
of another kind than the one about to be written. Kinds are told from the file's content
(:func:`file_kind`), not its name:

* ``eval``: a result JSON of ``metahyper eval`` (an object with ``fingerprint`` and ``accuracies``);
* ``export``: a checkpoint written by ``metahyper export``;
* ``checkpoint``: any other metahyper checkpoint (a run's ``best.pt``, ``last.pt``, ``swa.pt``):
  never an output target;
* ``figure``: a PNG image;
* ``other``: anything else (never overwritten).

So repeating an evaluation or an export replaces its earlier result, while a checkpoint, a run's
logs or a user's file are never overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from metahyper.errors import UserError
from metahyper.io import read_json
from metahyper.train.checkpoint import FORMAT
from metahyper.train.run import check_writable_dir

KINDS = {
    "eval": "an eval result",
    "export": "an exported model",
    "checkpoint": "a training checkpoint",
    "figure": "a PNG figure",
    "other": "a file metahyper did not write as this kind of output",
}
_PNG = b"\x89PNG\r\n\x1a\n"
_ZIP = b"PK\x03\x04"


def file_kind(path: str | os.PathLike) -> str:
    """The kind (a key of :data:`KINDS`) of the existing file ``path``."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_PNG):
        return "figure"
    if head.startswith(_ZIP):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # a zip that is not a torch file, or a damaged checkpoint: not ours to replace
            return "other"
        if isinstance(payload, dict) and payload.get("format") == FORMAT:
            extra = payload.get("extra")
            return "export" if isinstance(extra, dict) and "exported_from" in extra else "checkpoint"
        return "other"
    if head.lstrip().startswith(b"{"):
        try:
            data = read_json(path, "file", "")
        except UserError:
            return "other"
        if looks_like_eval(data):
            return "eval"
    return "other"


def looks_like_eval(data: object) -> bool:
    """Whether parsed JSON claims to be a result of ``metahyper eval`` (an object with
    ``fingerprint`` and ``accuracies``), damaged or not."""
    return isinstance(data, dict) and {"fingerprint", "accuracies"} <= set(data)


def check_output(path: str | os.PathLike, kind: str, option: str = "-o") -> Path:
    """Check, before any work, that ``kind`` output may be written to ``path``: not a directory,
    its directory writable (or creatable), and the file absent or of the same kind. One-line
    :class:`UserError` otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; name a file")
    check_writable_dir(path.parent, f"{option} {path}: the directory")
    if path.exists():
        found = file_kind(path)
        if found != kind:
            raise UserError(
                f"{option} {path} exists and holds {KINDS[found]}; refusing to replace it with {KINDS[kind]}: "
                "choose another path"
            )
    return path
