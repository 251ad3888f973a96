"""`pretrain --dataset imagenet`: torchvision's ImageFolder, the section 5.2 recipe, the ImageNet stem."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import metahyper.train.pretrain
from metahyper.cli import main
from metahyper.config import PretrainConfig
from metahyper.errors import UserError
from metahyper.train.checkpoint import load_checkpoint


@pytest.fixture
def imagenet(tmp_path, image_folder):
    """An ILSVRC-style folder: train/ and val/ with the same three class folders."""
    root = tmp_path / "ilsvrc"
    classes = ["n01440764", "n01443537", "n01484850"]
    image_folder(root / "train", {c: 4 for c in classes})
    image_folder(root / "val", {c: 2 for c in classes}, seed=1)
    return root


def test_pretrain_on_an_imagenet_folder(tmp_path, imagenet):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "pretrain",
            "--dataset",
            "imagenet",
            "--data-root",
            str(imagenet),
            "--model",
            "wrn-10-1",
            "--image-size",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    # the section 5.2 recipe where nothing was given; what was given stays
    assert (config["epochs"], config["batch_size"], config["milestones"], config["gamma"], config["weight_decay"]) == (
        1,
        4,
        [30, 60, 90],
        0.1,
        1e-4,
    )
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.model_config.stem == "imagenet" and ckpt.model_config.num_classes == 3
    assert ckpt.extra["classes"] == ["n01440764", "n01443537", "n01484850"] and ckpt.extra["input_size"] == 16
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and 0 <= history[0]["val_acc"] <= 1  # validated on val/ (6 images)


def test_imagenet_defaults_and_bad_folders(tmp_path, imagenet, monkeypatch):
    seen = []
    monkeypatch.setattr(
        metahyper.train.pretrain, "pretrain", lambda cfg, ctx: seen.append(cfg) or {"model": "m", "best_val_acc": None}
    )
    base = ["pretrain", "--model", "resnet-18", "--out", "r", "--device", "cpu"]
    assert CliRunner().invoke(main, [*base, "--dataset", "imagenet", "--data-root", str(imagenet)]).exit_code == 0
    cfg = seen.pop()
    assert (cfg.epochs, cfg.milestones, cfg.gamma, cfg.weight_decay, cfg.batch_size, cfg.lr, cfg.momentum) == (
        100,
        [30, 60, 90],
        0.1,
        1e-4,
        256,
        0.1,
        0.9,
    )
    assert cfg.model_stem == "imagenet"
    assert (
        CliRunner()
        .invoke(
            main,
            [*base, "--dataset", "imagenet", "--data-root", str(imagenet), "--weight-decay", "5e-4", "--stem", "cifar"],
        )
        .exit_code
        == 0
    )
    cfg = seen.pop()
    assert (cfg.weight_decay, cfg.epochs, cfg.model_stem) == (5e-4, 100, "cifar")
    assert CliRunner().invoke(main, [*base, "--dataset", "glyphs-a"]).exit_code == 0
    assert (seen[-1].epochs, seen[-1].weight_decay, seen[-1].model_stem) == (200, 5e-4, "cifar")  # CIFAR recipe
    with pytest.raises(UserError, match="^--dataset imagenet needs --data-root DIR"):
        PretrainConfig(dataset="imagenet", out="r")
    with pytest.raises(UserError, match="^--eval-split does not apply to --dataset imagenet"):
        PretrainConfig(dataset="imagenet", out="r", data_root=str(imagenet), eval_split="test")
    # bad folders: one line, exit 2, before a model is built
    (imagenet / "val" / "n01484850").rename(imagenet / "val" / "n99999999")
    monkeypatch.undo()
    result = CliRunner().invoke(
        main,
        [
            "pretrain",
            "--dataset",
            "imagenet",
            "--data-root",
            str(imagenet),
            "--model",
            "wrn-10-1",
            "--out",
            str(tmp_path / "bad"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "val/ and train/ have different class folders (e.g. n01484850, n99999999)" in result.output
    result = CliRunner().invoke(
        main,
        [
            "pretrain",
            "--dataset",
            "imagenet",
            "--data-root",
            str(tmp_path),
            "--model",
            "wrn-10-1",
            "--out",
            str(tmp_path / "bad"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2 and f"ImageNet folder {tmp_path} has no train/ folder" in result.output
