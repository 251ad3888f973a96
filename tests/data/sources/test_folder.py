"""`prepare folder`: any folder of class subfolders becomes a named dataset every command knows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metahyper.cli import main
from metahyper.config import EvalConfig, MetaTrainConfig, PretrainConfig
from metahyper.data import known_datasets, list_caches, open_split, prepare
from metahyper.data.sources.folder import MIN_IMAGES, ratio_splits
from metahyper.errors import UserError


@pytest.fixture
def source(tmp_path, image_folder) -> Path:
    return image_folder(tmp_path / "src", {f"class{i}": 3 + i % 2 for i in range(5)})


def build(root, source, **kw) -> list[Path]:
    return prepare("folder", root=root, source=source, **{"name": "mine", "image_size": 8, "progress": False, **kw})


def test_ratio_split_builds_every_split_with_stats_of_train(tmp_path, source):
    root = tmp_path / "data"
    written = build(root, source, split_ratios="0.6,0.2,0.2", seed=3)
    assert {p.name for p in written} == {
        f"{s}_{x}" for s in ("train", "val", "test") for x in ("data.hdf5", "labels.json")
    } | {"manifest.json"}
    splits = {s: open_split("mine", s, root=root) for s in ("train", "val", "test")}
    assert [d.num_classes for d in splits.values()] == [3, 1, 1]
    every = sorted(c for d in splits.values() for c in d.classes)
    assert every == [f"class{i}" for i in range(5)]
    assert splits["train"].classes == sorted(splits["train"].classes)  # torchmeta: sorted labels
    train = splits["train"]
    assert train.image_size == (8, 8)
    assert [train.images_per_class(c) for c in range(3)] == [3 + int(n[-1]) % 2 for n in train.classes]
    pixels = np.concatenate([train.read(c, range(train.images_per_class(c))).reshape(-1, 3) for c in range(3)]) / 255.0
    mean, std = train.normalization
    np.testing.assert_allclose(mean, pixels.mean(0), atol=1e-5)
    np.testing.assert_allclose(std, pixels.std(0), atol=1e-5)
    manifest = json.loads((root / "mine" / "manifest.json").read_text())
    assert manifest["statistics_of"] == "train" and manifest["classes"] == {"train": 3, "val": 1, "test": 1}
    assert "--split-ratios 0.6,0.2,0.2 --seed 3" in manifest["prepare"]
    assert "mine" in known_datasets(root)
    rows = [r for r in list_caches(root) if r.dataset == "mine"]
    assert [r.split for r in rows] == ["train", "val", "test"] and all(r.error is None for r in rows)
    # the same seed gives the same split
    assert (
        build(tmp_path / "again", source, split_ratios="0.6,0.2,0.2", seed=3)
        and open_split("mine", "train", root=tmp_path / "again").classes == train.classes
    )


def test_largest_remainder_split_and_zero_ratio_drops_a_split():
    classes = [f"c{i}" for i in range(10)]
    got = ratio_splits(classes, (0.64, 0.16, 0.2), seed=0)
    assert [len(got[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert ratio_splits(classes, (0.0, 0.0, 1.0), seed=0) == {"test": classes}
    with pytest.raises(UserError, match="give the val split none of the 3 classes"):
        ratio_splits(classes[:3], (0.8, 0.1, 0.1), seed=0)


def test_split_files_json_and_text(tmp_path, source):
    root = tmp_path / "data"
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps({"train": ["class3", "class0"], "test": ["class1"], "val": []}))
    build(root, source, splits=str(spec))
    assert open_split("mine", "train", root=root).classes == ["class0", "class3"]
    with pytest.raises(UserError, match="has no split 'val'; use one of train, test"):
        open_split("mine", "val", root=root)
    assert json.loads((root / "mine" / "manifest.json").read_text())["splits"] == ["train", "test"]
    texts = tmp_path / "lists"
    texts.mkdir()
    (texts / "train.txt").write_text("# train classes\nclass4\n\nclass2\n")
    (texts / "test.txt").write_text("class1\n")
    build(root, source, splits=str(texts), force=True)
    assert open_split("mine", "train", root=root).classes == ["class2", "class4"]
    assert open_split("mine", "test", root=root).classes == ["class1"]


@pytest.mark.parametrize(
    "splits, message",
    [
        ({"train": ["class0", "class1", "class0"]}, "class 'class0' is listed twice in train"),
        ({"train": ["class0"], "test": ["class0"]}, "class 'class0' is listed in both train and test"),
        ({"train": ["class0", "nope"]}, "names 1 train classes with no folder"),
        ({"training": ["class0"]}, "must map some of train, val, test"),
        ({"train": []}, "lists no classes"),
    ],
)
def test_bad_split_file_is_one_line(tmp_path, source, splits, message):
    spec = tmp_path / "split.json"
    spec.write_text(json.dumps(splits))
    with pytest.raises(UserError, match=message) as err:
        build(tmp_path / "data", source, splits=str(spec))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data").exists()  # refused before anything was written


def test_bad_input_is_refused_before_work(tmp_path, source, image_folder):
    root = tmp_path / "data"
    cases = [
        (dict(name="fc100"), "taken by a built-in dataset"),
        (dict(name="cifar100"), "taken by a built-in dataset"),
        (dict(name="imagenet"), "taken by a built-in dataset"),
        (dict(name="a,b"), "is not allowed"),
        (dict(name=None), "needs --name"),
        (dict(split_ratios="0.5,0.2,0.2"), "sum to 0.9, not 1"),
        (dict(split_ratios="0.5,0.5"), "three fractions"),
        (dict(split_ratios="1,0,0", splits=str(tmp_path)), "either --splits FILE or --split-ratios, not both"),
        (dict(seed=1, splits=str(tmp_path)), "either --splits FILE or --split-ratios/--seed, not both"),
    ]
    for kw, message in cases:
        with pytest.raises(UserError, match=message):
            build(root, source, **kw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no class subfolders"):
        build(root, tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        build(root, tmp_path / "missing")
    few = image_folder(tmp_path / "few", {"a": 3, "b": 1, "c": 0, "d": 4})
    with pytest.raises(UserError, match=f"class b .* has 1 images \\(and 1 more classes under {MIN_IMAGES}\\)"):
        build(root, few, split_ratios="1,0,0")
    assert not root.exists()


def test_corrupt_image_is_named_and_the_old_cache_stays(tmp_path, source):
    root = tmp_path / "data"
    build(root, source, split_ratios="0.6,0.2,0.2")
    before = {p.name: p.read_bytes() for p in (root / "mine").iterdir()}
    with pytest.raises(UserError, match="cache already exists .* pass --force"):
        build(root, source, split_ratios="0.6,0.2,0.2")
    bad = source / "class2" / "1.JPG"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    with pytest.raises(UserError, match=f"image {bad} cannot be read"):
        build(root, source, split_ratios="0.6,0.2,0.2", force=True)
    assert {p.name: p.read_bytes() for p in (root / "mine").iterdir()} == before


def test_decompression_bomb_is_refused(tmp_path, source, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # every test image has at least 36 pixels
    with pytest.raises(UserError, match="more pixels than PIL.Image.MAX_IMAGE_PIXELS allows"):
        build(tmp_path / "data", source)


def test_cli_prepare_datasets_and_every_config_know_the_name(tmp_path, source):
    root = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "prepare",
            "folder",
            "--source",
            str(source),
            "--name",
            "mine",
            "--root",
            str(root),
            "--image-size",
            "8",
            "--split-ratios",
            "0.6,0.2,0.2",
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(f"mine: wrote 7 files under {root}")
    res = runner.invoke(main, ["datasets", "--root", str(root)])
    assert res.exit_code == 0 and [line.split()[:3] for line in res.output.splitlines() if line.startswith("mine")] == [
        ["mine", "train", "3"],
        ["mine", "val", "1"],
        ["mine", "test", "1"],
    ]
    res = runner.invoke(main, ["prepare", "folder", "--source", str(source), "--name", "mine", "--root", str(root)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "pass --force" in res.output
    res = runner.invoke(main, ["prepare", "fc100", "--name", "x", "--root", str(root)])
    assert res.exit_code == 2 and "--name does not apply to fc100" in res.output
    res = runner.invoke(main, ["prepare", "folder", "--name", "x", "--root", str(root)])
    assert res.exit_code == 2 and "pass --source with a folder with one subfolder of images per class" in res.output
    # the name is a dataset for every command, under the data root that holds it
    PretrainConfig(dataset="mine", out="r", data_root=str(root))
    MetaTrainConfig(train="mine", test="mine", init="p", out="r", data_root=str(root))
    assert EvalConfig(checkpoint="c", dataset="mine,glyphs-b", shots=[1, 5], data_root=str(root)).dataset == [
        "mine",
        "glyphs-b",
    ]
    with pytest.raises(UserError, match=r"^--test: unknown dataset 'other'; known datasets: fc100, .*, mine \(under"):
        MetaTrainConfig(train="mine", test="other", init="p", out="r", data_root=str(root))
    with pytest.raises(UserError, match="^--dataset: unknown dataset 'mine'"):
        PretrainConfig(dataset="mine", out="r", data_root=str(tmp_path / "elsewhere"))
    (root / "mine" / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="manifest .* is not valid JSON"):
        open_split("mine", "train", root=root)
    [row] = [r for r in list_caches(root) if r.dataset == "mine"]
    assert "is not valid JSON" in row.error
