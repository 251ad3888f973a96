"""MiniImageNet builder on tiny sources in the three public formats."""

from __future__ import annotations

import csv
import json
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.layouts import read_split_file
from metahyper.errors import UserError
from tests.data.conftest import mini_pickle


def _write_pickles(folder, names, per_class=2):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    dicts = {}
    for split, name in names.items():
        dicts[split] = mini_pickle(split, per_class, rng)
        (folder / name).write_bytes(pickle.dumps(dicts[split], protocol=4))
    return dicts


def _check(root, dicts):
    for split, n in (("train", 64), ("val", 16), ("test", 20)):
        data = open_split("miniimagenet", split, root=root)
        assert data.num_classes == n and data.classes == sorted(read_split_file(f"miniimagenet/{split}.txt"))
        assert data.image_size == (84, 84)
        assert json.loads((root / "miniimagenet" / f"{split}_labels.json").read_text()) == data.classes
        wnid = data.classes[3]
        rows = dicts[split]["class_dict"][wnid]
        np.testing.assert_array_equal(data.read(3, [0, 1]), dicts[split]["image_data"][rows])


def test_torchmeta_tar(tmp_path):
    names = {s: f"mini-imagenet-cache-{s}.pkl" for s in ("train", "val", "test")}
    dicts = _write_pickles(tmp_path / "pk", names)
    with tarfile.open(tmp_path / "mini-imagenet.tar.gz", "w:gz") as tar:
        for n in names.values():
            tar.add(tmp_path / "pk" / n, arcname=n)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="2 images instead of 600"):
        prepare("miniimagenet", root=root, source=tmp_path / "mini-imagenet.tar.gz")
    prepare("miniimagenet", root=root, source=tmp_path / "mini-imagenet.tar.gz", strict=False)
    _check(root, dicts)


def test_learn2learn_pickles_and_class_check(tmp_path):
    names = {
        "train": "mini-imagenet-cache-train.pkl",
        "val": "mini-imagenet-cache-validation.pkl",
        "test": "mini-imagenet-cache-test.pkl",
    }
    dicts = _write_pickles(tmp_path / "l2l", names)
    root = tmp_path / "data"
    prepare("miniimagenet", root=root, source=tmp_path / "l2l", strict=False)
    _check(root, dicts)
    # a val pickle with a test class: wrong split membership, existing cache untouched
    bad = dict(dicts["val"])
    bad["class_dict"] = dict(bad["class_dict"])
    bad["class_dict"]["n01930112"] = bad["class_dict"].pop(sorted(bad["class_dict"])[0])
    (tmp_path / "l2l" / names["val"]).write_bytes(pickle.dumps(bad))
    with pytest.raises(UserError, match="not in the Ravi & Larochelle val split"):
        prepare("miniimagenet", root=root, source=tmp_path / "l2l", force=True, strict=False)
    _check(root, dicts)
    bad["image_data"] = bad["image_data"].astype(np.float32)
    (tmp_path / "l2l" / names["val"]).write_bytes(pickle.dumps(bad))
    with pytest.raises(UserError, match="image_data is .* float32, expected uint8"):
        prepare("miniimagenet", root=root, source=tmp_path / "l2l", force=True, strict=False)


def test_image_folder_with_csvs(tmp_path):
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    originals = {}
    for split in ("train", "val", "test"):
        wnids = read_split_file(f"miniimagenet/{split}.txt")[:2]
        with open(src / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            for wnid in wnids:
                for k in range(2):
                    name = f"{wnid}{k + 1:08d}.jpg"
                    img = Image.fromarray(rng.integers(0, 256, (100, 130, 3), dtype=np.uint8))
                    img.save(src / "images" / name.replace(".jpg", ".png"), format="PNG")
                    (src / "images" / name.replace(".jpg", ".png")).rename(src / "images" / name)
                    originals[name] = img
                    w.writerow([name, wnid])
    root = tmp_path / "data"
    prepare("miniimagenet", root=root, source=src, strict=False)
    data = open_split("miniimagenet", "val", root=root)
    wnid = data.classes[1]
    expected = np.asarray(originals[f"{wnid}00000002.jpg"].resize((84, 84), Image.LANCZOS))
    np.testing.assert_array_equal(data.read(1, [1])[0], expected)  # CSV order, LANCZOS 84x84


def test_source_folder_missing_csvs(tmp_path):
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "train.csv").write_text("filename,label\n")
    with pytest.raises(UserError, match="nor the Ravi & Larochelle CSVs") as err:
        prepare("miniimagenet", root=tmp_path / "data", source=tmp_path / "raw")
    assert "\n" not in str(err.value) and not (tmp_path / "data").exists()
