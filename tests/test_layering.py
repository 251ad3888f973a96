"""Layers import downward only: every import of every ``metahyper`` module, read with ``ast`` (module
level, inside functions, under ``TYPE_CHECKING``), goes to its own layer or a lower one, never to a
higher layer nor sideways to a peer of the same rank. From lowest to highest (``docs/architecture.md``
draws them):

    io, errors, progress
      <-  data, models
      <-  meta
      <-  train (+ config, options)
      <-  plots, report
      <-  demo
      <-  cli (+ cli_options, __main__)

``data`` and ``models`` are peers: neither imports the other. Every module belongs to a layer
(``LAYERS`` below); a new module fails the test until it is given one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import metahyper

PACKAGE = Path(metahyper.__file__).resolve().parent

# module or package -> (rank, layer); a module belongs to its longest listed prefix
LAYERS: dict[str, tuple[int, str]] = {
    "metahyper": (0, "base"),  # the package's own __init__ only (version string)
    "metahyper.errors": (0, "base"),
    "metahyper.io": (0, "base"),
    "metahyper.limits": (0, "base"),  # $METAHYPER_MAX_MEMORY_GB and the memory available
    "metahyper.progress": (0, "base"),  # the progress display (tqdm or log lines)
    "metahyper.data": (1, "data"),
    "metahyper.models": (1, "models"),
    "metahyper.meta": (2, "meta"),
    "metahyper.train": (3, "train"),
    "metahyper.config": (3, "train"),
    "metahyper.options": (3, "train"),  # the config dataclasses' option metadata
    "metahyper.plots": (4, "plots"),
    "metahyper.report": (4, "plots"),
    "metahyper.demo": (5, "demo"),
    "metahyper.cli": (6, "cli"),
    "metahyper.cli_options": (6, "cli"),
    "metahyper.__main__": (6, "cli"),
}


def layer_of(module: str) -> tuple[int, str] | None:
    """The layer of a ``metahyper`` module, or None when no entry covers it."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        found = LAYERS.get(".".join(parts[:n]))
        if found is not None:
            return found
    return LAYERS.get(module)  # bare "metahyper": the package __init__ only


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of the source tree (vs. a name defined in one)."""
    rel = Path(*name.split("."))
    base = PACKAGE.parent / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``metahyper`` import in ``source``; ``from A import b`` counts
    as ``A.b`` when that is a module, else as ``A``; relative imports are resolved."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else base))
    return [(line, name) for line, name in found if name == "metahyper" or name.startswith("metahyper.")]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """One line per import of ``module`` that goes up (or sideways to a peer layer)."""
    own = layer_of(module)
    if own is None:
        return [f"{module}: not assigned to a layer; add it to LAYERS in tests/test_layering.py"]
    out = []
    for line, target in imported_modules(source, module, is_package):
        theirs = layer_of(target)
        if theirs is None:
            out.append(f"{module}:{line} imports {target}, which is not assigned to a layer")
        elif theirs[1] != own[1] and theirs[0] >= own[0]:
            out.append(
                f"{module}:{line} ({own[1]}) imports {target} ({theirs[1]}): a layer may only import lower layers"
            )
    return out


def test_every_import_goes_downward():
    files = sorted(PACKAGE.rglob("*.py"))
    assert files
    problems = []
    for path in files:
        problems += violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "module, source, bad",
    [
        (
            "metahyper.data.cache",
            "def f():\n    from metahyper.train.run import Run\n",
            True,
        ),  # upward, hidden in a function
        ("metahyper.models.groups", "from metahyper import plots\n", True),  # `from package import module`
        ("metahyper.data.episodes", "import metahyper.models.registry\n", True),  # sideways to a peer
        ("metahyper.io", "from metahyper.errors import UserError\n", False),
        ("metahyper.train.pretrain", "from metahyper.meta import MAML\nfrom metahyper.train import run\n", False),
        ("metahyper.train.run", "from . import checkpoint\nfrom ..io import write_json\n", False),  # relative, downward
        ("metahyper.train.run", "from ..plots import movement_plot\n", True),  # relative, upward
        ("metahyper.demo", "from metahyper.plots import curves_plot\n", False),
        ("metahyper.plots", "from metahyper.demo import run_demo\n", True),
        ("metahyper.newthing", "", True),  # every module must have a layer
    ],
)
def test_checker_catches_upward_imports(module, source, bad):
    assert bool(violations(source, module)) == bad, violations(source, module)
