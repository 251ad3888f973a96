"""A cache build killed (SIGKILL) or interrupted (Ctrl-C, SIGINT) while it writes: the old cache
stays as it was; Ctrl-C exits 130 with the temporaries removed; a killed build's temporaries are
removed by the next build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from metahyper.data import list_caches
from metahyper.io import remove_stale_temporaries
from tests.faults.cache_helpers import snapshot, temporaries, write_tiny

REPO = Path(__file__).resolve().parents[2]

# Runs `metahyper prepare glyphs --force` on a tiny class list; the signal is sent from inside the
# HDF5 writer, after the first dataset of the third file, so that it lands mid-build every time.
_CHILD = textwrap.dedent("""
    import os, signal, sys
    from metahyper.cli import main
    from metahyper.data import writing
    from metahyper.data.sources import glyphs

    sig = getattr(signal, sys.argv[2], None)
    tiny = {
        d: {s: [(f"latin-U+{cp:04X}", cp) for cp in (0x41, 0x42)] for s in ("train", "val", "test")}
        for d in glyphs.DOMAINS
    }
    glyphs.glyph_classes = lambda *a, **k: tiny
    real, calls = writing.write_classes_hdf5, []

    def write(path, items, *args):
        calls.append(path)
        def signalled():
            for n, item in enumerate(items):
                yield item
                if len(calls) == 3 and n == 0 and sig is not None:
                    os.kill(os.getpid(), sig)
        return real(path, signalled(), *args)

    writing.write_classes_hdf5 = write
    main(["prepare", "glyphs", "--root", sys.argv[1], "--image-size", "8", "--force"])
""")


def _prepare(tmp_path: Path, root: Path, sig: str) -> subprocess.CompletedProcess:
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    return subprocess.run(
        [sys.executable, str(script), str(root), sig],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_ctrl_c_during_write_exits_130_and_keeps_old_cache(tmp_path):
    root = tmp_path / "data"
    folders = ("glyphs-a", "glyphs-b")
    write_tiny(root, 7, folders=folders)
    before = snapshot(root)
    res = _prepare(tmp_path, root, "SIGINT")
    assert res.returncode == 130, res.stderr[-2000:]
    assert (
        res.stderr.strip().splitlines()[-1] == "Interrupted (Ctrl-C); files being written were left as they were before"
    )
    assert "Traceback" not in res.stderr and "Aborted" not in res.stderr
    assert snapshot(root) == before  # no temporaries, no split replaced


def test_sigkill_during_write_then_rerun_removes_stale_temporaries(tmp_path):
    root = tmp_path / "data"
    folders = ("glyphs-a", "glyphs-b")
    write_tiny(root, 7, folders=folders)
    before = snapshot(root)
    res = _prepare(tmp_path, root, "SIGKILL")
    assert res.returncode == -signal.SIGKILL
    stale = temporaries(root)
    assert len(stale) == 12  # the killed build's files, all still under temporary names
    assert {k: v for k, v in snapshot(root).items() if not Path(k).name.startswith(".")} == before
    assert all(r.error is None for r in list_caches(root))  # the old cache is intact and valid
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a temporary of a live writer is left alone
        mine = root / "glyphs-a" / f".train_data.hdf5.{live.pid}-0123abcd.tmp"
        mine.write_bytes(b"in progress")
        res = _prepare(tmp_path, root, "None")  # the next build, not interrupted
        assert res.returncode == 0, res.stderr[-2000:]
        assert temporaries(root) == [mine]
        assert remove_stale_temporaries(root / "glyphs-a" / "train_data.hdf5") == []
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temporaries(root / "glyphs-a" / "train_data.hdf5") == [mine]
    assert all(r.error is None and r.image_size == "8x8" for r in list_caches(root))
