"""Functions stay short: no function or method of ``metahyper`` (nested ones included) spans more
than ``MAX_LINES`` lines, counted from its ``def`` line to its last line, unless it says why it is
long. It says so with a ``# long: <reason>`` comment on the line just above the ``def`` (above its
decorators, when it has some), or with a docstring line that starts with ``long: <reason>``; the
reason may not be empty.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import metahyper

PACKAGE = Path(metahyper.__file__).resolve().parent
MAX_LINES = 60
MARKER = re.compile(r"long:\s*\S")


def _justified(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    """Whether the line above the function (and its decorators) is a ``# long: <reason>`` comment,
    or a line of its docstring starts with ``long: <reason>``."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    above = lines[first - 2].strip() if first >= 2 else ""
    if above.startswith("#") and MARKER.match(above[1:].strip()):
        return True
    doc = ast.get_docstring(node) or ""
    return any(MARKER.match(line.strip()) for line in doc.splitlines())


def long_functions(source: str, name: str = "<source>") -> list[str]:
    """One line per function of ``source`` longer than ``MAX_LINES`` lines that does not say why."""
    lines = source.splitlines()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES and not _justified(node, lines):
                out.append(f"{name}:{node.lineno} {node.name} has {length} lines (at most {MAX_LINES})")
    return out


# Files whose long functions are being split on other branches; drop an entry once its file passes.
FILES = sorted(path.relative_to(PACKAGE.parent).as_posix() for path in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("name", FILES)
def test_functions_are_short(name):
    problems = long_functions((PACKAGE.parent / name).read_text(), name)
    assert not problems, "\n".join(problems)


def test_files_are_found():
    assert "metahyper/meta/maml.py" in FILES


def _function(body_lines: int, above: str = "", doc: str = "", decorator: str = "") -> str:
    """Source of one function with ``body_lines`` lines after its ``def`` line."""
    head = [above] if above else []
    if decorator:
        head.append(decorator)
    body = [f'    """{doc}"""'] if doc else []
    body += ["    x = 0"] * (body_lines - len(body))
    return "\n".join(["import functools", "", *head, "def f():", *body, ""])


@pytest.mark.parametrize(
    "source, flagged",
    [
        (_function(MAX_LINES - 1), False),  # exactly MAX_LINES lines with the def
        (_function(MAX_LINES), True),
        (_function(MAX_LINES, above="# long: one pass over the file, its states in locals"), False),
        (_function(MAX_LINES, above="# long:"), True),  # a marker without a reason
        (_function(MAX_LINES, above="# a long function"), True),  # not the marker
        (_function(MAX_LINES, doc="Summary.\n\n    long: the steps share many locals"), False),
        (
            _function(MAX_LINES, above="# long: a reason", decorator="@functools.cache"),
            False,
        ),  # above the decorators
        (
            "\n".join(["def outer():", "    def inner():", *["        x = 0"] * MAX_LINES, "    return inner", ""]),
            True,
        ),  # nested functions count too (both are flagged)
    ],
)
def test_checker_flags_long_functions(source, flagged):
    assert bool(long_functions(source)) == flagged, long_functions(source)
