"""md-fungi on a tiny FGVCx Fungi 2018 layout: train.json / val.json (COCO-style) and images/."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.sources.folder import load_image
from metahyper.data.sources.meta_dataset import md_splits
from metahyper.errors import UserError
from tests.data.sources.md_helpers import fake_meta_dataset

SPLITS = md_splits("fungi")
PICK = {"train": SPLITS["train"][:2], "val": SPLITS["valid"][:1], "test": SPLITS["test"][:1]}


def make_fungi(folder, counts: dict[str, int], seed: int = 0) -> dict[str, list[str]]:
    """``train.json``, ``val.json`` and ``images/<species>/<n>.JPG`` with ``counts[class]`` images
    per ``NNNN.<name>`` class, every second image in val.json; returns {class: [file names]}."""
    rng = np.random.default_rng(seed)
    files: dict[str, list[str]] = {}
    halves = [{"images": [], "annotations": [], "categories": []} for _ in range(2)]
    image_id = 0
    for name, n in counts.items():
        category, species = int(name[:4]), name[5:]
        for half in halves:
            half["categories"].append({"id": category, "name": species, "supercategory": "Fungi"})
        for k in range(n):
            file_name = f"images/{category}_{species.strip()}/F{image_id:05d}.JPG"
            (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (30 + 7 * k, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / file_name, format="JPEG")
            half = halves[image_id % 2]
            half["images"].append({"id": image_id, "file_name": file_name, "width": 50, "height": 30 + 7 * k})
            half["annotations"].append({"id": image_id, "image_id": image_id, "category_id": category})
            files.setdefault(name, []).append(file_name)
            image_id += 1
    for half, json_name in zip(halves, ("train.json", "val.json")):
        (folder / json_name).write_text(json.dumps(half))
    return files


def _order(files: list[str]) -> list[str]:
    """Meta-Dataset's order: train.json's images (even ids here), then val.json's."""
    return [f for f in files if int(f[-9:-4]) % 2 == 0] + [f for f in files if int(f[-9:-4]) % 2 == 1]


def test_build_and_read(tmp_path):
    counts = {c: 2 + i for i, c in enumerate(c for cs in PICK.values() for c in cs)}
    files = make_fungi(tmp_path / "src", counts)
    root = tmp_path / "data"
    with pytest.raises(
        UserError,
        match="class '0226.Cortinarius malicorius' has 2 images where Meta-Dataset's fungi specification has 200",
    ):
        prepare("md-fungi", root=root, source=tmp_path / "src")
    prepare("md-fungi", root=root, source=tmp_path / "src", strict=False, image_size=32, chunk=2)
    for split, classes in PICK.items():
        data = open_split("md-fungi", split, root=root)
        assert data.classes == classes and data.image_size == (32, 32) and data.storage == "rgb"
        for c, name in enumerate(classes):
            ordered = _order(files[name])
            assert data.images_per_class(c) == counts[name]
            for i in (0, len(ordered) - 1):
                np.testing.assert_array_equal(data.read(c, [i])[0], load_image(tmp_path / "src" / ordered[i], 32))


def test_strict_and_bad_annotations(tmp_path, monkeypatch):
    splits = {"train": ["0003.Amanita muscaria", "0007.Boletus edulis "], "valid": ["0001.A b"], "test": ["0002.C d"]}
    counts = {"0003.Amanita muscaria": 3, "0007.Boletus edulis ": 2, "0001.A b": 2, "0002.C d": 2}
    fake_meta_dataset(monkeypatch, tmp_path / "shipped", "fungi", splits, counts)
    make_fungi(tmp_path / "src", counts)
    root = tmp_path / "data"
    prepare("md-fungi", root=root, source=tmp_path / "src")
    assert open_split("md-fungi", "train", root=root).classes == splits["train"]  # a trailing space kept
    before = {p.name: p.read_bytes() for p in (root / "md-fungi").iterdir()}
    train = json.loads((tmp_path / "src" / "train.json").read_text())
    dropped = train["annotations"].pop()
    (tmp_path / "src" / "train.json").write_text(json.dumps(train))
    with pytest.raises(UserError, match=r"image images/.*\.JPG has no annotation"):
        prepare("md-fungi", root=root, source=tmp_path / "src", force=True)
    train["annotations"].append(dropped)
    train["images"].pop()
    (tmp_path / "src" / "train.json").write_text(json.dumps(train))
    with pytest.raises(UserError, match="annotation of image .* names no listed image"):
        prepare("md-fungi", root=root, source=tmp_path / "src", force=True)
    make_fungi(tmp_path / "src", {**counts, "0001.A b": 3})
    with pytest.raises(
        UserError, match="md-fungi: class '0001.A b' has 3 images where Meta-Dataset's fungi specification has 2"
    ):
        prepare("md-fungi", root=root, source=tmp_path / "src", force=True)
    make_fungi(tmp_path / "src", counts)
    (tmp_path / "src" / "images" / "2_C d" / "F00008.JPG").unlink()
    with pytest.raises(UserError, match="F00008.JPG is listed in the annotations but missing"):
        prepare("md-fungi", root=root, source=tmp_path / "src", force=True)
    (tmp_path / "src" / "images" / "2_C d" / "F00008.JPG").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="F00008.JPG cannot be read"):
        prepare("md-fungi", root=root, source=tmp_path / "src", force=True)
    assert {p.name: p.read_bytes() for p in (root / "md-fungi").iterdir()} == before
