import json
import math

import pytest
import torch

from metahyper.config import PretrainConfig
from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.pretrain import pretrain
from metahyper.train.ratios import ratio_keys


def _cfg(root, out, **kw) -> PretrainConfig:
    base = dict(
        dataset="glyphs-a",
        out=str(out),
        model="hyper-wrn-10-1",
        image_size=8,
        epochs=2,
        batch_size=32,
        milestones=[1],
        data_root=str(root),
        device="cpu",
        progress=False,
    )
    return PretrainConfig(**{**base, **kw})


def test_ratio_keys_follow_groups_and_stages():
    model = build_model("hyper-wrn-10-1", variant=1, num_classes=3)
    keys = dict(zip((n for n, _ in model.named_parameters()), ratio_keys(model)))
    assert keys["hypernets.0.weight"] == "hypernetworks/stage1"
    assert keys["hypernets.2.weight"] == "hypernetworks/stage3"
    assert keys["stages.1.0.conv2.embedding"] == "embeddings/stage2"
    assert keys["stages.1.0.conv1.weight"] == "backbone/stage2"  # variant 1: the stage's first conv is plain
    assert keys["fc.weight"] == "classifier/fc" and keys["stem.0.weight"] == "backbone/stem"


def test_pretrain_run_directory(glyph_root, tmp_path):
    epochs = []
    summary = pretrain(_cfg(glyph_root, tmp_path / "run"), on_step=epochs.append)
    assert epochs == [0, 1]  # on_step: before each epoch
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["stage"] == "pretrain" and config["model"] == "hyper-wrn-10-1" and config["milestones"] == [1]
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["lr"] == pytest.approx(0.1) and history[1]["lr"] == pytest.approx(0.02)  # x0.2 at milestone 1
    for h in history:
        assert math.isfinite(h["train_loss"]) and 0 <= h["val_acc"] <= 1
        for stage in (1, 2, 3):  # Figure 2: embedding norm / gradient norm per stage
            assert h[f"ratio/embeddings/stage{stage}"] > 0
    assert (run / "history.csv").read_text().startswith("epoch,lr,train_loss")
    last = load_checkpoint(run / "last.pt")
    assert last.extra["epoch"] == 2 and last.extra["input_size"] == 8 and "optimizer" in last.extra["state"]
    best = load_checkpoint(run)
    assert best.path.name == "best.pt" and best.extra["val_acc"] == pytest.approx(summary["best_val_acc"])
    assert best.model_config.num_classes == len(last.extra["classes"])
    with pytest.raises(UserError, match="already holds a run"):
        pretrain(_cfg(glyph_root, run))
    with pytest.raises(UserError, match="different options"):
        pretrain(_cfg(glyph_root, run, lr=0.5, resume=True))


def test_swa_average_becomes_the_run_model(glyph_root, tmp_path):
    # epochs 2 and 3 are averaged (SWALR), then BatchNorm statistics are recomputed (update_bn)
    summary = pretrain(_cfg(glyph_root, tmp_path / "run", model="wrn-10-1", epochs=3, swa_start=1, swa_lr=0.05))
    swa = load_checkpoint(tmp_path / "run" / "swa.pt")
    best = load_checkpoint(tmp_path / "run")
    assert swa.extra["swa"] and best.extra["swa"]
    assert all(torch.equal(swa.state_dict[k], best.state_dict[k]) for k in swa.state_dict)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    averaged = [k for k in swa.state_dict if k.endswith("weight")]
    assert any(not torch.equal(swa.state_dict[k], last.state_dict[k]) for k in averaged)
    means = [k for k in swa.state_dict if k.endswith("running_mean")]
    assert any(not torch.equal(swa.state_dict[k], last.state_dict[k]) for k in means)
    assert summary["swa_val_acc"] is not None


def test_pretrain_resume_after_sigkill_matches_uninterrupted_run(glyph_root, tmp_path, cli, killed):
    args = [
        "pretrain",
        "--dataset",
        "glyphs-a",
        "--model",
        "hyper-wrn-10-1",
        "--image-size",
        "8",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--milestones",
        "2",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--seed",
        "3",
        "--quiet",
    ]
    cli(*args, "--out", str(tmp_path / "full"))
    # SIGKILL before epoch 2 (index 1), after epoch 1's last.pt was written
    proc = killed(tmp_path / "full", tmp_path / "killed", 1)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert load_checkpoint(tmp_path / "killed" / "last.pt").extra["epoch"] == 1
    cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt")
    assert resumed.extra["epoch"] == 3
    for k, v in full.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k]), k
    assert json.loads((tmp_path / "full" / "history.json").read_text()) == json.loads(
        (tmp_path / "killed" / "history.json").read_text()
    )


def test_in_memory_or_in_place_trains_the_same_model_and_may_change_on_resume(glyph_root, tmp_path):
    pretrain(_cfg(glyph_root, tmp_path / "ram", epochs=1, in_memory="yes"))
    pretrain(_cfg(glyph_root, tmp_path / "disk", epochs=1, in_memory="no"))
    ram, disk = (load_checkpoint(tmp_path / run / "last.pt") for run in ("ram", "disk"))
    assert all(torch.equal(v, disk.state_dict[k]) for k, v in ram.state_dict.items())
    assert (tmp_path / "ram" / "history.csv").read_text() == (tmp_path / "disk" / "history.csv").read_text()
    pretrain(_cfg(glyph_root, tmp_path / "disk", epochs=1, in_memory="yes", resume=True))  # not refused
    with pytest.raises(UserError, match="--in-memory does not apply to --dataset imagenet"):
        _cfg(glyph_root, tmp_path / "i", dataset="imagenet", in_memory="no").validate()
