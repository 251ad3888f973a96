"""The fault-injection tests use the pipeline fixtures of ``tests/train/conftest.py`` (tiny glyphs
cache, one-epoch pretrain runs, CLI and killed-run helpers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_train_fixtures", Path(__file__).resolve().parents[1] / "train" / "conftest.py"
)
_train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_train)

_one_thread, glyph_root, pretrained, cli, killed = (
    _train._one_thread,
    _train.glyph_root,
    _train.pretrained,
    _train.cli,
    _train.killed,
)
run_cli, run_killed = _train.run_cli, _train.run_killed
