"""Tracebacks left in saving and resuming: a full disk while torch writes a checkpoint (its zip
writer raises RuntimeError, not OSError), and ``pretrain --resume`` on a cache whose classes
changed (the classifier no longer fits): each is one line, and nothing existing is replaced."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train import checkpoint
from metahyper.train.checkpoint import load_checkpoint, save_checkpoint
from tests.faults.cache_helpers import Quota, temporaries, write_tiny

REPO = Path(__file__).resolve().parents[2]


def test_disk_full_inside_torch_save_is_one_line_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    source = save_checkpoint(tmp_path / "best.pt", build_model("hyper-wrn-10-1", num_classes=3))
    export = ["export", "--checkpoint", str(source), "-o", str(tmp_path / "plain.pt")]
    assert CliRunner().invoke(main, export).exit_code == 0
    old = tmp_path / "plain.pt"
    before = old.read_bytes()
    Quota.budget = 2_000  # the zip's first records fit, the weights do not
    monkeypatch.setattr(checkpoint, "open", lambda path, mode, **kw: Quota(path, "w"), raising=False)
    result = CliRunner().invoke(main, export)  # the export repeated, onto a full disk
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.strip().count("\n") == 0
    assert "disk full while writing plain.pt" in result.output and "nothing was replaced" in result.output
    assert old.read_bytes() == before and not temporaries(tmp_path)


_SMALL_DISK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from metahyper.errors import UserError
    from metahyper.models import build_model
    from metahyper.train.checkpoint import save_checkpoint
    target = Path(sys.argv[1]) / "last.pt"
    try:
        save_checkpoint(target, build_model("wrn-16-2", num_classes=10))  # about 1 MB of weights
    except UserError as err:
        print("error:", err)
    print("left:", sorted(p.name for p in target.parent.iterdir()))
""")


def test_real_small_filesystem(tmp_path):
    """A real 256 KB tmpfs (a user and mount namespace, no root needed): torch's own zip writer
    meets ENOSPC; skipped where such a mount is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=256k tmpfs {mnt} && "]
    if shutil.which("unshare") is None or subprocess.run([*mount[:-1], mount[-1] + "true"]).returncode:
        pytest.skip("needs unshare and a tmpfs mount in a user namespace")
    script = tmp_path / "save.py"
    script.write_text(_SMALL_DISK)
    res = subprocess.run(
        [*mount[:-1], mount[-1] + f"exec {sys.executable} {script} {mnt}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in res.stdout.splitlines())
    assert "disk full while writing last.pt" in lines["error"] and "nothing was replaced" in lines["error"]
    assert lines["left"] == "[]"


def _pretrain(root: Path, out: Path, *extra: str):
    return CliRunner().invoke(
        main,
        ["pretrain", "--dataset", "miniimagenet", "--model", "wrn-10-1", "--epochs", "1", "--batch-size", "6",
         "--milestones", "", "--val-fraction", "0", "--data-root", str(root), "--out", str(out), "--device", "cpu",
         "--quiet", *extra],
    )  # fmt: skip


def test_resume_on_a_cache_whose_classes_changed_names_the_dataset(tmp_path):
    root, out = tmp_path / "data", tmp_path / "run"
    write_tiny(root, 1, size=8, classes=3)
    first = _pretrain(root, out)
    assert first.exit_code == 0, first.output
    kept = lambda: {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".pt" or p.name == "config.json"}  # noqa: E731
    before = kept()
    write_tiny(root, 1, size=8, classes=4)  # the cache is rebuilt with another class
    result = _pretrain(root, out, "--resume")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.strip().count("\n") == 0
    assert "dataset miniimagenet (train split) changed" in result.output and "3 classes then, 4 now" in result.output
    assert kept() == before  # the checkpoints and the run's config.json as they were
    assert load_checkpoint(out / "last.pt").extra["classes"] == ["n00000000", "n00000001", "n00000002"]


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(tmp_path):
    saved = load_checkpoint(save_checkpoint(tmp_path / "a.pt", build_model("wrn-10-1", num_classes=3)))
    with pytest.raises(UserError, match=r"a\.pt does not match model wrn-10-1: size mismatch for fc\.weight"):
        saved.load_into(build_model("wrn-10-1", num_classes=4))
