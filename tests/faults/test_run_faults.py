"""Run directories under faults: kills at several points, moved directories, concurrent runs,
diverging training and oversized requests. Interruptions are raised from the loops' ``on_step``
hook in-process (same files as a kill); real SIGKILLs run through ``tests/faults/killed_run.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.memory import ENV
from metahyper.train.meta_train import meta_train
from metahyper.train.pretrain import pretrain
from metahyper.train.run import LOCK_FILE
from tests.conftest import tiny_meta_config


class Interrupted(Exception):
    pass


def _pre(root, out, **kw) -> PretrainConfig:
    base = dict(
        dataset="glyphs-a",
        out=str(out),
        model="wrn-10-1",
        image_size=8,
        epochs=3,
        batch_size=64,
        milestones=[],
        data_root=str(root),
        device="cpu",
        progress=False,
        seed=2,
    )
    return PretrainConfig(**{**base, **kw})


def _meta(root, init, out, **kw) -> MetaTrainConfig:
    return tiny_meta_config(root, init, out, **{"save_every": 2, **kw})


def _stop_at(step: int):
    def hook(i: int) -> None:
        if i == step:
            raise Interrupted

    return hook


def _same_weights(a, b) -> bool:
    sa, sb = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stop", [0, 1, 2])
def test_every_interruption_point_resumes_to_the_uninterrupted_result(glyph_root, tmp_path, stop):
    """--save-every 2: stopped before epoch 1 (config only), before 2 (best.pt, no last.pt) or
    before 3 (last.pt): a fresh run is refused, --resume finishes with the uninterrupted weights."""
    pretrain(_pre(glyph_root, tmp_path / "full", save_every=2))
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        pretrain(_pre(glyph_root, out, save_every=2), on_step=_stop_at(stop))
    assert (out / "last.pt").exists() == (stop == 2) and (out / "best.pt").exists() == (stop > 0)
    with pytest.raises(UserError, match="pass --resume"):
        pretrain(_pre(glyph_root, out, save_every=2))
    summary = pretrain(_pre(glyph_root, out, save_every=2, resume=True))
    assert summary["restarted"] == (stop < 2)
    assert _same_weights(tmp_path / "full" / "last.pt", out / "last.pt")
    with pytest.raises(UserError, match="holds no run to resume; drop --resume"):
        pretrain(_pre(glyph_root, tmp_path / "never", resume=True))


def test_sigkilled_meta_train_with_best_but_no_last_restarts(glyph_root, pretrained, tmp_path, killed):
    """--val-every 1 below --save-every 2, SIGKILLed before iteration 2: best.pt, no last.pt."""
    init = pretrained["wrn-10-1"]
    meta_train(_meta(glyph_root, init, tmp_path / "full"))
    proc = killed(tmp_path / "full", tmp_path / "killed", 1)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (tmp_path / "killed" / "best.pt").is_file() and not (tmp_path / "killed" / "last.pt").exists()
    args = ["meta-train", "--config", str(tmp_path / "full"), "--out", str(tmp_path / "killed")]
    fresh = CliRunner().invoke(main, args)
    assert fresh.exit_code == 2 and "stopped before its first last.pt; pass --resume" in fresh.output
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert (
        resumed.exit_code == 0
        and "held no last.pt to resume from, so --resume ran the run again from scratch" in resumed.output
    )
    assert _same_weights(tmp_path / "full" / "last.pt", tmp_path / "killed" / "last.pt")


def test_moved_copied_and_respelled_run_directories_resume(glyph_root, tmp_path, monkeypatch):
    pretrain(_pre(glyph_root, tmp_path / "full"))
    with pytest.raises(Interrupted):
        pretrain(_pre(glyph_root, tmp_path / "a" / "run"), on_step=_stop_at(2))
    shutil.copytree(tmp_path / "a" / "run", tmp_path / "copy")
    shutil.move(tmp_path / "a", tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    pretrain(_pre(glyph_root, "./b/run/", resume=True))  # moved, relative, trailing slash
    pretrain(_pre(glyph_root, str(tmp_path / "copy"), resume=True))  # copied, absolute
    for run in ("b/run", "copy"):
        assert _same_weights(tmp_path / "full" / "last.pt", tmp_path / run / "last.pt")


def test_meta_train_resume_compares_resolved_init_paths(glyph_root, pretrained, tmp_path, monkeypatch):
    init = pretrained["wrn-10-1"]
    with pytest.raises(Interrupted):
        meta_train(_meta(glyph_root, init, tmp_path / "run"), on_step=_stop_at(2))
    monkeypatch.chdir(init.parent)
    meta_train(_meta(glyph_root, f"./{init.name}/", tmp_path / "run", resume=True))
    with pytest.raises(UserError, match="different options: init="):
        meta_train(_meta(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "run", resume=True))


_HOLD = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print("busy", flush=True); sys.exit(0)
os.write(fd, str(os.getpid()).encode()); print("locked", flush=True); time.sleep(60)
"""


def test_a_run_directory_is_locked_while_a_run_writes(glyph_root, tmp_path):
    out = tmp_path / "run"
    seen = []

    def probe(epoch: int) -> None:  # another process tries the lock while this run trains
        seen.append(
            subprocess.run(
                [sys.executable, "-c", _HOLD, str(out / LOCK_FILE)], capture_output=True, text=True
            ).stdout.strip()
        )

    pretrain(_pre(glyph_root, out, epochs=1), on_step=probe)
    assert seen == ["busy"]
    out2 = tmp_path / "run2"
    out2.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out2 / LOCK_FILE)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=rf"in use by another run \(PID {holder.pid}\)"):
            pretrain(_pre(glyph_root, out2, epochs=1))
        assert not (out2 / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    pretrain(_pre(glyph_root, out2, epochs=1))  # released when the holder died
    assert (out2 / "last.pt").is_file()


def test_divergence_stops_the_run_and_keeps_the_last_finite_checkpoint(glyph_root, tmp_path, monkeypatch):
    real = torch.nn.functional.cross_entropy
    poisoned = []

    def cross_entropy(*args, **kw):
        return real(*args, **kw) * (float("nan") if poisoned else 1.0)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", cross_entropy)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"diverged at epoch 2, step 1: the loss became nan.*last.pt keeps.*lower --lr"):
        pretrain(_pre(glyph_root, out, epochs=3), on_step=lambda e: poisoned.append(1) if e == 1 else None)
    assert load_checkpoint(out / "last.pt").extra["epoch"] == 1  # finite, loadable
    monkeypatch.undo()
    with pytest.raises(UserError, match="diverged at epoch 1"):
        pretrain(_pre(glyph_root, tmp_path / "huge-lr", lr=1e6, epochs=1))
    assert not (tmp_path / "huge-lr" / "last.pt").exists() and not (tmp_path / "huge-lr" / "best.pt").exists()


def test_meta_train_divergence(glyph_root, pretrained, tmp_path):
    out = tmp_path / "meta"
    with pytest.raises(UserError, match="diverged at iteration 2: the loss became nan.*lower --outer-lr"):
        meta_train(_meta(glyph_root, pretrained["wrn-10-1"], out, outer_lr=1e30, min_lr=1e-4, save_every=1))
    assert (
        load_checkpoint(out / "last.pt").extra["iteration"] == 1
    )  # huge but finite weights; iteration 2 saved nothing


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda root, init, out: _pre(root, out, image_size=4000),
            r"pretraining wrn-10-1 \(.* parameters\) on batches of 64 images of 4000px needs",
        ),
        (
            lambda root, init, out: _pre(root, out, model="hyper-wrn-10-1", d=100000),
            "pretraining hyper-wrn-10-1 .* needs",
        ),
        (lambda root, init, out: _meta(root, init, out, meta_batch=100000), "meta-batches of 100000 tasks .* needs"),
        (lambda root, init, out: _meta(root, init, out, iterations=10**12), "meta-training wrn-10-1 .* needs"),
    ],
)
def test_oversized_requests_are_refused_before_anything_is_allocated(
    glyph_root, pretrained, tmp_path, monkeypatch, make, match
):
    monkeypatch.setenv(ENV, "0.5")
    cfg = make(glyph_root, pretrained["wrn-10-1"], tmp_path / "out")
    with pytest.raises(UserError, match=match + r".*more than the 0.5 GB.*METAHYPER_MAX_MEMORY_GB"):
        (meta_train if isinstance(cfg, MetaTrainConfig) else pretrain)(cfg)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(UserError, match="must be a positive number of GB"):
        (meta_train if isinstance(cfg, MetaTrainConfig) else pretrain)(cfg)


def test_unwritable_out_is_refused_before_work(glyph_root, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="cannot be created: .*file is a file"):
        pretrain(_pre(glyph_root, tmp_path / "file" / "run"))
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(UserError, match="not writable"):
            pretrain(_pre(glyph_root, tmp_path / "ro" / "run"))


def test_degenerate_splits_and_batches(glyph_root, tmp_path):
    with pytest.raises(UserError, match="--val-fraction 0.99 leaves no training images"):
        pretrain(_pre(glyph_root, tmp_path / "a", val_fraction=0.99))
    from metahyper.train.pretrain import _datasets

    n = len(_datasets(_pre(glyph_root, tmp_path / "b"))[1])
    # a last batch of one 3x3 image reaches BatchNorm as one value per channel: it is skipped
    pretrain(_pre(glyph_root, tmp_path / "b", image_size=3, epochs=1, batch_size=n - 1))
    assert load_checkpoint(tmp_path / "b" / "last.pt").extra["epoch"] == 1


def test_two_runs_started_at_once_in_one_directory(glyph_root, tmp_path):
    """Exactly one of two simultaneous runs with the same --out finishes; the other fails in one
    line (the lock, or the finished run it then finds)."""
    args = [
        sys.executable,
        "-m",
        "metahyper",
        "pretrain",
        "--dataset",
        "glyphs-a",
        "--model",
        "wrn-10-1",
        "--image-size",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--milestones",
        "",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    results = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [rc for rc, _ in results] == [0, 2], results
    err = results[1][1].strip()
    assert err.count("\n") == 0 and ("in use by another run (PID" in err or "already holds a run" in err), err
    assert load_checkpoint(tmp_path / "run" / "last.pt").extra["epoch"] == 2


def test_damaged_run_files_are_one_line_errors(glyph_root, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        pretrain(_pre(glyph_root, out), on_step=_stop_at(1))
    (out / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="is not a run config"):
        pretrain(_pre(glyph_root, out, resume=True))
    (out / "config.json").write_bytes(b"\x80\x81")
    with pytest.raises(UserError, match="is not valid JSON"):
        pretrain(_pre(glyph_root, out, resume=True))
