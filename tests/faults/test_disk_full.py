"""A full disk while a cache is written: one-line error, temporaries removed, the old cache untouched
(all of its files: a multi-file cache is replaced as a whole or not at all)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import pytest

from metahyper.data import list_caches, prepare, writing
from metahyper.data.sources import glyphs
from metahyper.errors import UserError
from tests.faults.cache_helpers import Quota, snapshot, write_tiny

REPO = Path(__file__).resolve().parents[2]


def test_enospc_inside_hdf5_write_keeps_old_cache(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_tiny(root, 1)
    before = snapshot(root)
    Quota.budget = 30_000  # the first split files fit, a later one does not
    monkeypatch.setattr(writing, "open", lambda path, mode: Quota(path, mode.replace("b", "")), raising=False)
    with pytest.raises(UserError) as err:
        write_tiny(root, 2, size=32)  # a --force rebuild with another image size
    message = str(err.value)
    assert "disk full" in message and "nothing was replaced" in message and "\n" not in message
    assert snapshot(root) == before  # no temporaries, no new split next to old ones
    assert all(r.error is None and r.image_size == "4x4" for r in list_caches(root))


def test_free_space_checked_before_rendering(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(4 << 20, 2 << 20, (2 << 20) - 4096))
    monkeypatch.setattr(glyphs, "glyph_classes", lambda *a, **k: pytest.fail("rendered before the space check"))
    with pytest.raises(UserError, match=r"not enough disk space for the glyphs cache .* MB needed, 2\.0 MB free"):
        prepare("glyphs", root=tmp_path / "data")
    assert not (tmp_path / "data").exists()


def _mount_tmpfs(mnt: Path, size: str, then: str = "true") -> list[str]:
    """The command that runs ``then`` with a ``size`` tmpfs on ``mnt``, in a user and mount namespace."""
    return ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mnt} && {then}"]


_REAL_DISK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from metahyper import io as mio
    from metahyper.errors import UserError
    from tests.faults.cache_helpers import snapshot, write_tiny
    root = Path(sys.argv[1])
    write_tiny(root, 1)                                      # fits in the small filesystem
    before = snapshot(root)
    try:
        write_tiny(root, 2, size=64)                        # preflight check: refused before writing
    except UserError as err:
        print("preflight:", err)
    mio.check_free_space = lambda *a: None                  # now let it run into the full disk
    try:
        write_tiny(root, 2, size=64)
    except UserError as err:
        print("midwrite:", err)
    print("unchanged:", snapshot(root) == before)
""")


def test_real_small_filesystem(tmp_path):
    """A real 256 KB tmpfs (no root needed: a user namespace): libhdf5 itself meets ENOSPC."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if shutil.which("unshare") is None or subprocess.run(_mount_tmpfs(mnt, "64k"), capture_output=True).returncode:
        pytest.skip("needs unshare and a tmpfs mount in a user namespace")
    script = tmp_path / "fill.py"
    script.write_text(_REAL_DISK)
    res = subprocess.run(
        _mount_tmpfs(mnt, "256k", f"exec {sys.executable} {script} {mnt}/data"),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert "not enough disk space" in lines["preflight"]
    assert "disk full" in lines["midwrite"] and "nothing was replaced" in lines["midwrite"]
    assert lines["unchanged"] == "True"
    assert "Segmentation" not in res.stderr and "HDF5-DIAG" not in res.stderr
