"""Output files named by the user (``eval -o`` and the eval table it names, ``export -o``, the
plots' ``-o``, ``report --markdown/--csv/--json``): checked before any work, never silently
replacing something else.

:func:`check_output` refuses a path that is a directory or cannot be written, and an existing file
of another kind than the one about to be written; :func:`check_outputs` does so for the several
files of one command, and refuses two of them naming the same file. Kinds are told from the file's
content (:func:`file_kind`), not its name:

* ``eval``: a result JSON of ``metahyper eval`` (an object with ``fingerprint`` and ``accuracies``);
* ``eval-table.json`` / ``.csv`` / ``.md``: the table of an ``eval`` over several datasets or shot
  counts (JSON: an object with ``datasets``, ``shots`` and ``results``; CSV: exactly the header
  :data:`CSV_FIELDS` names; Markdown: its first line is the marker of :data:`MARKDOWN_MARKERS`);
* ``benchmark.json`` / ``.csv`` / ``.md``: the table of ``eval --benchmark`` (JSON: an object with
  ``benchmark``, ``sources`` and ``results``; CSV and Markdown as the eval table's);
* ``report.json`` / ``.csv`` / ``.md``: what ``metahyper report`` writes (JSON: ``title``,
  ``rows``, ``columns`` and ``cells``; CSV and Markdown as the eval table's);
* ``export``: a checkpoint written by ``metahyper export``;
* ``checkpoint``: any other metahyper checkpoint (a run's ``best.pt``, ``last.pt``, ``swa.pt``):
  never an output target;
* ``figure``: a PNG image written by metahyper (its ``Software`` text chunk is
  :data:`FIGURE_METADATA`'s; any other PNG, a user's photo, is ``other``);
* ``other``: anything else, an empty or unreadable file too (never overwritten).

So repeating an evaluation, an export, a report or a plot replaces its earlier result, while a
checkpoint, a run's config and logs or a user's file are never overwritten. The writers take
their CSV header (:data:`CSV_FIELDS`), Markdown marker (:func:`with_marker`) and PNG metadata
(:data:`FIGURE_METADATA`) from here, so what is written is always recognised again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from metahyper.errors import UserError
from metahyper.io import read_json
from metahyper.train.checkpoint import FORMAT
from metahyper.train.run import check_writable_dir

KINDS = {
    "eval": "an eval result",
    "eval-table.json": "the JSON of an eval table",
    "eval-table.csv": "the CSV of an eval table",
    "eval-table.md": "the Markdown of an eval table",
    "benchmark.json": "the JSON of an eval --benchmark table",
    "benchmark.csv": "the CSV of an eval --benchmark table",
    "benchmark.md": "the Markdown of an eval --benchmark table",
    "report.json": "the JSON of a report",
    "report.csv": "the CSV of a report",
    "report.md": "the Markdown of a report",
    "export": "an exported model",
    "checkpoint": "a training checkpoint",
    "figure": "a PNG figure of metahyper",
    "other": "a file metahyper did not write as this kind of output",
}
JSON_KEYS = {
    "eval": {"fingerprint", "accuracies"},
    "eval-table.json": {"datasets", "shots", "results"},
    "benchmark.json": {"benchmark", "sources", "results"},
    "report.json": {"title", "rows", "columns", "cells"},
}
CSV_FIELDS = {
    "eval-table.csv": ("dataset", "shots", "mean", "ci95", "episodes", "fingerprint", "json"),
    "benchmark.csv": ("source", "mean", "ci95", "episodes", "fingerprint"),
    "report.csv": (
        "model", "dataset", "split", "ways", "shots", "kind", "train_seed", "runs", "mean", "ci95", "sd",
        "pooled_mean", "pooled_ci95", "episodes", "source",
    ),
}  # fmt: skip
MARKDOWN_MARKERS = {
    "eval-table.md": "<!-- metahyper eval table -->",
    "benchmark.md": "<!-- metahyper benchmark table -->",
    "report.md": "<!-- metahyper report -->",
}
FIGURE_METADATA = {"Software": "metahyper"}  # a PNG text chunk, before the image data
_PNG = b"\x89PNG\r\n\x1a\n"
_FIGURE = b"tEXtSoftware\x00" + FIGURE_METADATA["Software"].encode()
_ZIP = b"PK\x03\x04"
_HEAD = 4096  # bytes read to tell a file's kind (the longest CSV header fits)


def with_marker(kind: str, text: str) -> str:
    """``text`` (Markdown) under the marker line of ``kind`` (a key of :data:`MARKDOWN_MARKERS`),
    which hides it when rendered and lets :func:`file_kind` recognise the file."""
    return f"{MARKDOWN_MARKERS[kind]}\n{text}"


def _checkpoint_kind(path: Path) -> str:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a zip that is not a torch file, or a damaged checkpoint: not ours to replace
        return "other"
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        extra = payload.get("extra")
        return "export" if isinstance(extra, dict) and "exported_from" in extra else "checkpoint"
    return "other"


def _json_kind(path: Path) -> str:
    try:
        data = read_json(path, "file", "")
    except UserError:
        return "other"
    if isinstance(data, dict):
        for kind, keys in JSON_KEYS.items():
            if keys <= set(data):
                return kind
    return "other"


def file_kind(path: str | os.PathLike) -> str:
    """The kind (a key of :data:`KINDS`) of the existing file ``path``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD)
    except OSError:
        return "other"
    if head.startswith(_PNG):
        return "figure" if _FIGURE in head else "other"
    if head.startswith(_ZIP):
        return _checkpoint_kind(path)
    if head.lstrip().startswith(b"{"):
        return _json_kind(path)
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    for kind, marker in MARKDOWN_MARKERS.items():
        if first == marker:
            return kind
    for kind, fields in CSV_FIELDS.items():
        if first == ",".join(fields):
            return kind
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


def check_outputs(outputs: Sequence[tuple[str | os.PathLike, str, str]]) -> list[Path]:
    """:func:`check_output` for each ``(path, kind, option)`` of one command, all before any of
    them is written, and a :class:`UserError` when two of them name the same file (the second
    would replace the first)."""
    seen: dict[Path, str] = {}
    checked = []
    for path, kind, option in outputs:
        path = check_output(path, kind, option)
        key = path.absolute().resolve()
        if key in seen:
            raise UserError(f"{option} {path} is the file {seen[key]} writes too; name a different file for each")
        seen[key] = f"{option} {path}"
        checked.append(path)
    return checked
