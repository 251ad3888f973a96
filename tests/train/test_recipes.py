"""CIFAR recipe options: Nesterov momentum, crop padding mode, Izmailov et al.'s SWA schedule."""

import numpy as np
import pytest

from metahyper.config import PretrainConfig
from metahyper.data import random_crop_flip
from metahyper.errors import UserError
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.pretrain import lr_factor, pretrain


def izmailov_lr(epoch: int, lr_init: float = 0.1, swa_lr: float = 0.05, swa_start: int = 161) -> float:
    """The schedule of Izmailov et al.'s train.py (``--swa --swa_start 161``), 0-based epoch."""
    t = epoch / swa_start
    ratio = swa_lr / lr_init
    factor = 1.0 if t <= 0.5 else (1.0 - (t - 0.5) / 0.4 * (1.0 - ratio) if t <= 0.9 else ratio)
    return lr_init * factor


def test_lr_factor_is_izmailovs_schedule():
    ours = [0.1 * lr_factor(e, swa_start=160, swa_ratio=0.5) for e in range(300)]
    assert ours == pytest.approx([izmailov_lr(e) for e in range(300)], abs=1e-15)
    assert ours[80] == 0.1 and ours[81] < 0.1 and ours[145] == 0.05 and ours[299] == 0.05


def test_pad_modes():
    images = np.full((40, 6, 6, 3), 7, dtype=np.uint8)
    zeros = random_crop_flip(images, padding=2, generator=np.random.default_rng(0), pad_mode="zeros")
    reflect = random_crop_flip(images, padding=2, generator=np.random.default_rng(0), pad_mode="reflect")
    assert (zeros == 0).any() and (reflect == 7).all()
    ramp = np.arange(6, dtype=np.uint8)[None, :, None, None] * np.ones((1, 1, 6, 3), dtype=np.uint8)
    crops = random_crop_flip(np.repeat(ramp, 30, 0), padding=2, generator=np.random.default_rng(1), pad_mode="reflect")
    assert {tuple(c[:, 0, 0]) for c in crops} >= {
        (2, 1, 0, 1, 2, 3)
    }  # rows 2, 1 mirrored above row 0, edge not repeated


def _pre(root, out, **kw) -> PretrainConfig:
    base = dict(
        dataset="glyphs-a",
        out=str(out),
        model="wrn-10-1",
        image_size=8,
        batch_size=64,
        epochs=4,
        milestones=[],
        data_root=str(root),
        device="cpu",
        progress=False,
    )
    return PretrainConfig(**{**base, **kw})


def test_nesterov_and_swa_schedule_in_pretraining(glyph_root, tmp_path):
    cfg = _pre(glyph_root, tmp_path / "swa", lr=0.1, swa_start=2, swa_lr=0.05, lr_schedule="swa", epochs=4)
    pretrain(cfg)
    last = load_checkpoint(tmp_path / "swa" / "last.pt")
    assert last.extra["state"]["optimizer"]["param_groups"][0]["nesterov"] is True
    lrs = [row["lr"] for row in last.extra["history"]]
    assert lrs == pytest.approx([0.1 * lr_factor(e, 2, 0.5) for e in range(4)]) and lrs[0] == 0.1 and lrs[-1] == 0.05
    assert load_checkpoint(tmp_path / "swa" / "best.pt").extra["swa"] is True
    pretrain(_pre(glyph_root, tmp_path / "plain", epochs=1, nesterov=False, pad_mode="zeros"))
    state = load_checkpoint(tmp_path / "plain" / "last.pt").extra["state"]
    assert state["optimizer"]["param_groups"][0]["nesterov"] is False


def test_recipe_options_are_checked(glyph_root, tmp_path, cli):
    with pytest.raises(UserError, match="needs --swa-start"):
        _pre(glyph_root, tmp_path / "x", lr_schedule="swa")
    with pytest.raises(UserError, match="--nesterov needs --momentum"):
        _pre(glyph_root, tmp_path / "x", momentum=0.0)
    proc = cli(
        "pretrain",
        "--dataset",
        "glyphs-a",
        "--model",
        "wrn-10-1",
        "--out",
        str(tmp_path / "y"),
        "--pad-mode",
        "edge",
        check=False,
    )
    assert proc.returncode == 2 and "--pad-mode" in proc.stderr
