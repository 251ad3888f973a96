"""The one atomic writer and the JSON / CSV helpers of :mod:`metahyper.io`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from metahyper.errors import UserError
from metahyper.io import (
    atomic_files,
    atomic_path,
    check_free_space,
    read_csv,
    remove_stale_temporaries,
    write_csv,
    write_json,
    write_text,
)


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


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_new_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "x.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".x.json.{int(dead.stdout)}-0badc0de.tmp"
    mine = tmp_path / f".x.json.{os.getpid()}-0badc0de.tmp"
    other_target = tmp_path / f".y.json.{int(dead.stdout)}-0badc0de.tmp"
    for p in (stale, mine, other_target):
        p.write_text("partial")
    write_json(target, [1])
    assert not stale.exists() and mine.exists() and other_target.exists()
    assert remove_stale_temporaries(tmp_path / "y.json") == [other_target]


def test_free_space_check(tmp_path):
    check_free_space(tmp_path / "new" / "folder", 1, "x")  # the nearest existing parent is measured
    with pytest.raises(UserError, match=r"not enough disk space for the cache in .*: about .* MB needed, .* MB free"):
        check_free_space(tmp_path, 1 << 62, "the cache")


def test_unwritable_location_is_one_line(read_only_python):
    """A read-only filesystem (a tmpfs mounted ro in a user namespace, no root needed)."""
    mnt, run = read_only_python
    res = run(
        "-c",
        "from metahyper.errors import UserError\nfrom metahyper.io import write_text\n"
        f"try:\n    write_text('{mnt}/run/x.json', 'x')\nexcept UserError as err:\n    print(err)",
    )
    assert res.stdout.strip() == f"cannot write {mnt}/run: Read-only file system; choose another location", res.stderr
