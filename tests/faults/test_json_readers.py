"""Every JSON and CSV file metahyper reads back goes through one reader (:mod:`metahyper.io`):
a file nested far too deep, holding a byte that is not UTF-8, too large, or with a field of the
wrong type is one line naming the file (exit 2 from the command line), never a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.data import layouts, open_split
from metahyper.data.manifest import read_manifest
from metahyper.data.registry import LAYOUTS
from metahyper.data.sources.folder import read_splits
from metahyper.data.sources.miniimagenet import _read_csv
from metahyper.data.writing import FILES_ATTR, verify_file
from metahyper.errors import UserError
from metahyper.io import MAX_READ_BYTES, parse_json, read_csv, read_json
from metahyper.report import collect
from metahyper.train.logger import RunLogger
from metahyper.train.outputs import check_output
from metahyper.train.run import read_config
from tests.faults.cache_helpers import write_tiny

DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB: a RecursionError in json.loads
JSON_DAMAGE = {"deep": (DEEP, "nested more than 100 levels deep"), "ff": (b'{"a": "\xff"}', "not UTF-8")}
CSV_DAMAGE = {
    "ff": (b"iteration,loss,val_acc,val_ci95\n1,\xff,0.5,0.1\n", "not UTF-8"),
    "huge-field": (b"iteration,loss\n1," + b"9" * 200_000 + b"\n", "not valid CSV"),
}
EVAL = {
    "model": "WRN-10-1",
    "method": "maml",
    "dataset": "glyphs-b",
    "split": "test",
    "ways": 5,
    "shots": 1,
    "episodes": 2,
    "mean": 0.5,
    "ci95": 0.1,
    "accuracies": [0.4, 0.6],
    "fingerprint": "f00d",
    "settings": {},
}
META_CONFIG = {"stage": "meta-train", "shots": 1}


def _cli(*args: str) -> str:
    """The one line a command refused with (exit code 2)."""
    result = CliRunner().invoke(main, [*args, "--device", "cpu"] if args[0] == "eval" else list(args))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


def _raised(call: Callable[[], object]) -> str:
    with pytest.raises(UserError) as err:
        call()
    return str(err.value)


def _run_dir(tmp: Path, config: dict, **files: bytes) -> Path:
    run = tmp / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(json.dumps(config))
    for name, content in files.items():
        (run / name).write_bytes(content)
    return run


def _plot(command: str, run: Path) -> str:
    return _cli(command, str(run), "-o", str(run.parent / "figure.png"))


# site -> (file it reads, given the damaged bytes: the one-line error); each writes the damage itself
def _config_option(tmp, bad):
    (tmp / "c.json").write_bytes(bad)
    return tmp / "c.json", _cli("pretrain", "--config", str(tmp / "c.json"))


def _report_file(tmp, bad):
    (tmp / "e.json").write_bytes(bad)
    return tmp / "e.json", _cli("report", str(tmp / "e.json"))


def _report_folder(tmp, bad):
    (tmp / "runs" / "a").mkdir(parents=True)
    (tmp / "runs" / "a" / "e.json").write_bytes(bad)
    return tmp / "runs" / "a" / "e.json", _cli("report", str(tmp / "runs"))


def _run_config(tmp, bad):
    run = _run_dir(tmp, {})
    (run / "config.json").write_bytes(bad)
    assert str(run / "config.json") in _raised(lambda: read_config(run))
    return run / "config.json", _plot("movement-plot", run)


def _curves_json(tmp, bad):
    run = _run_dir(tmp, META_CONFIG, **{"curves.json": bad})
    return run / "curves.json", _plot("movement-plot", run)


def _history_json(tmp, bad):
    run = _run_dir(tmp, {"stage": "pretrain", "model": "wrn-10-1"}, **{"history.json": bad})
    return run / "history.json", _plot("curves", run)


def _labels_file(tmp, bad):
    write_tiny(tmp / "cache", 1)
    labels = LAYOUTS["miniimagenet"].labels_file(tmp / "cache", "train")
    labels.write_bytes(bad)
    rows = CliRunner().invoke(main, ["datasets", "--root", str(tmp / "cache")])
    assert rows.exit_code == 0 and f"ERROR: labels file {labels}" in rows.output, rows.output
    return labels, _raised(lambda: open_split("miniimagenet", "train", root=tmp / "cache"))


def _manifest(tmp, bad):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "manifest.json").write_bytes(bad)
    return tmp / "mine" / "manifest.json", _raised(lambda: read_manifest(tmp, "mine"))


def _splits_option(tmp, bad):
    (tmp / "splits.json").write_bytes(bad)
    return tmp / "splits.json", _raised(lambda: read_splits(tmp / "splits.json"))


def _shipped_split_file(tmp, bad, monkeypatch):
    monkeypatch.setattr(layouts, "splits_dir", lambda: tmp)
    (tmp / "omniglot").mkdir()
    (tmp / "omniglot" / "train.json").write_bytes(bad)
    return tmp / "omniglot" / "train.json", _raised(lambda: layouts.read_split_file("omniglot/train.json"))


def _hdf5_file_list(tmp, bad):
    path = write_tiny(tmp / "cache", 1)[0]
    if len(bad) > 60_000:  # an HDF5 attribute holds at most 64 KB: 20,000 levels
        bad = b"[" * 20_000 + b"]" * 20_000
    with h5py.File(path, "r+") as f:
        f.attrs[FILES_ATTR] = np.bytes_(bad)
    return path, _raised(lambda: verify_file(path))


def _output_target(tmp, bad):
    (tmp / "out.json").write_bytes(b'{"a": ' + bad + b"}")  # starts like an eval result, so it is parsed
    message = _raised(lambda: check_output(tmp / "out.json", "eval"))
    assert "did not write" in message  # told apart as a file that is not ours, and never replaced
    return tmp / "out.json", message


def _movement_csv(tmp, bad):
    run = _run_dir(tmp, META_CONFIG, **{"movement.csv": bad})
    return run / "movement.csv", _plot("movement-plot", run)


def _val_csv(tmp, bad):
    run = _run_dir(tmp, META_CONFIG, **{"val.csv": bad})
    return run / "val.csv", _plot("curves", run)


def _train_csv(tmp, bad):
    run = _run_dir(tmp, META_CONFIG, **{"train.csv": bad})
    return run / "train.csv", _plot("curves", run)


def _source_split_csv(tmp, bad):
    (tmp / "train.csv").write_bytes(bad)
    return tmp / "train.csv", _raised(lambda: _read_csv(tmp / "train.csv"))


JSON_SITES = [
    _config_option,
    _report_file,
    _report_folder,
    _run_config,
    _curves_json,
    _history_json,
    _labels_file,
    _manifest,
    _splits_option,
    _shipped_split_file,
    _hdf5_file_list,
    _output_target,
]
CSV_SITES = [_movement_csv, _val_csv, _train_csv, _source_split_csv]


def _cases(sites: list, damage: dict) -> list:
    return [
        pytest.param(site, *bad, id=f"{site.__name__.strip('_')}-{kind}")
        for site in sites
        for kind, bad in damage.items()
    ]


@pytest.mark.parametrize("site, bad, problem", _cases(JSON_SITES, JSON_DAMAGE) + _cases(CSV_SITES, CSV_DAMAGE))
def test_every_reader_refuses_damage_in_one_line_naming_the_file(tmp_path, monkeypatch, site, bad, problem):
    args = (tmp_path, bad, monkeypatch) if site is _shipped_split_file else (tmp_path, bad)
    path, message = site(*args)
    assert message.strip().count("\n") == 0 and str(path) in message, message
    if site is not _output_target:
        assert problem in message, message


def test_eval_refuses_a_damaged_run_config_beside_the_checkpoint_before_the_work(pretrained, glyph_root, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pretrained["wrn-10-1"], run)
    for bad, problem in JSON_DAMAGE.values():
        (run / "config.json").write_bytes(bad)
        args = ["--checkpoint", str(run), "--dataset", "glyphs-b", "--shots", "1", "--data-root", str(glyph_root)]
        message = _cli("eval", *args)
        assert f"run config {run / 'config.json'}" in message and problem in message, message
        assert not list(run.glob("eval-*.json"))


def test_size_is_checked_before_the_file_is_read(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: nothing is written, and nothing must be read
        fh.truncate(MAX_READ_BYTES + 1)
    message = _raised(lambda: read_json(big, "log", "remove it"))
    assert message == f"log {big} is 256.0 MB, more than the 256.0 MB allowed; remove it"
    assert "more than the 8 bytes allowed" in _raised(lambda: read_csv(big, max_bytes=8))


def test_depth_bound_is_exact(tmp_path):
    nested = parse_json("[" * 100 + "]" * 100, "x", "")
    depth = 0
    while isinstance(nested, list) and nested:
        nested, depth = nested[0], depth + 1
    assert depth == 99  # 100 levels: the innermost list is empty
    assert "nested more than 100 levels" in _raised(lambda: parse_json("[" * 101 + "]" * 101, "x", ""))
    assert parse_json('{"a": [[1]]}', "x", "", max_depth=3) == {"a": [[1]]}
    assert "nested more than 2 levels" in _raised(lambda: parse_json('{"a": [[1]]}', "x", "", max_depth=2))


def test_report_names_every_damaged_eval_json(tmp_path):
    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "eval-ok.json").write_text(json.dumps(EVAL))
    (runs / "a" / "config.json").write_text(json.dumps({"stage": "pretrain"}))  # not a result: skipped quietly
    assert [r["path"] for r in collect([runs])] == [str(runs / "a" / "eval-ok.json")]
    (runs / "a" / "eval-five.json").write_text(json.dumps({**EVAL, "ways": "five"}))
    (runs / "b").mkdir()
    (runs / "b" / "eval-cut.json").write_text(json.dumps(EVAL)[:50])
    message = _cli("report", str(runs))
    assert message.startswith("Error: 2 damaged JSON files among the results:") and message.count("\n") == 1
    assert str(runs / "a" / "eval-five.json") in message and "'ways' is 'five', expected an integer" in message
    assert str(runs / "b" / "eval-cut.json") in message and "is not valid JSON" in message
    assert str(runs / "a" / "eval-ok.json") not in message
    # given as a file: the same check, and the fix
    message = _cli("report", str(runs / "a" / "eval-five.json"))
    assert "'ways' is 'five', expected an integer; repair or delete it" in message
    for field, value in (("accuracies", [0.5, "x"]), ("settings", []), ("mean", True)):
        (runs / "a" / "eval-five.json").write_text(json.dumps({**EVAL, field: value}))
        assert f"'{field}'" in _cli("report", str(runs / "a" / "eval-five.json"))


def test_a_cut_or_deep_log_line_is_dropped_on_resume(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = [b'{"step": 1, "loss": 2.0}', DEEP, b'{"step": 2, "loss": \xff}', b'{"step": 3, "loss": 1.0}', b'{"st']
    log.write_bytes(b"\n".join(lines) + b"\n")
    RunLogger(tmp_path, tensorboard=False, progress=False).open(resumed_at=3)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 3]


def test_intact_files_still_read(tmp_path):
    """The reader changes nothing for intact files: a tiny cache opens, the shipped split files read."""
    write_tiny(tmp_path, 1)
    assert open_split("miniimagenet", "train", root=tmp_path).num_classes == 3
    assert layouts.read_split_file("omniglot/train.json")


@pytest.mark.parametrize("command", ["curves", "movement-plot"])
def test_a_pretrain_config_without_its_model_is_one_line(tmp_path, command):
    run = _run_dir(tmp_path, {"stage": "pretrain", "dataset": "glyphs-a"})
    (run / "history.json").write_text("[]")
    assert "config.json is damaged (KeyError: 'model')" in _plot(command, run)
