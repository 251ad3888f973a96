"""The one atomic writer and the JSON / CSV helpers of :mod:`metahyper.io`."""

from __future__ import annotations

import json

import pytest

from metahyper.io import atomic_files, atomic_path, read_csv, write_csv, write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
    with atomic_path(tmp_path / "new" / "y.bin") as tmp:  # parents are created
        assert tmp.parent == tmp_path / "new"
        tmp.write_bytes(b"y")
    assert (tmp_path / "new" / "y.bin").read_bytes() == b"y"


def test_atomic_files_replace_all_or_none(tmp_path):
    a, b = tmp_path / "a" / "x.json", tmp_path / "a" / "y.json"
    a.parent.mkdir()
    a.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_files([a, b]) as (ta, tb):
            ta.write_text("half")
            tb.write_text("half")
            raise RuntimeError("build failed")
    assert a.read_text() == "old" and list(a.parent.iterdir()) == [a]
    with atomic_files([a, b]) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert sorted(p.name for p in a.parent.iterdir()) == ["x.json", "y.json"]


def test_json_and_csv_roundtrip(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2]}
    write_csv(tmp_path / "x.csv", [{"i": 1, "loss": 0.5}, {"i": 2, "acc": 0.25}])
    assert (tmp_path / "x.csv").read_text().splitlines()[0] == "i,loss,acc"  # union of keys, first-seen order
    assert read_csv(tmp_path / "x.csv") == [{"i": "1", "loss": "0.5", "acc": ""}, {"i": "2", "loss": "", "acc": "0.25"}]
    write_csv(tmp_path / "y.csv", [{"i": 1, "extra": 3}], ["i"])
    assert read_csv(tmp_path / "y.csv") == [{"i": "1"}]
