"""md-mscoco on a tiny COCO 2017 layout: train2017/<id>.jpg and annotations/instances_train2017.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.sources.meta_dataset import md_splits
from metahyper.data.sources.mscoco import crop_box
from metahyper.data.storage import fit_image
from metahyper.errors import UserError
from tests.data.sources.md_helpers import fake_meta_dataset

SPLITS = md_splits("mscoco")
VAL, TEST = SPLITS["valid"][0], SPLITS["test"][0]  # person, bicycle
SIZES = {139: (64, 48), 285: (50, 70), 632: (40, 40)}
# (image id, category, bbox): the person rows interleave images; the last box lies outside its image
NOTES = [
    (139, VAL, [10.0, 20.0, 30.0, 20.5]),
    (285, VAL, [0.4, 0.6, 49.2, 69.1]),
    (139, TEST, [3, 4, 5, 6]),
    (139, VAL, [60.2, 40.7, 3.1, 7.3]),
    (632, TEST, [1.5, 2.5, 0.2, 0.3]),
    (632, TEST, [45.0, 10.0, 2.0, 2.0]),
]


def make_coco(folder, notes=NOTES, categories=(VAL, TEST), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "train2017").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(exist_ok=True)
    for image_id, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / "train2017" / f"{image_id:012d}.jpg"
        )
    ids = {name: 2 * i + 1 for i, name in enumerate(categories)}
    instances = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, (w, h) in SIZES.items()],
        "annotations": [
            {"id": k, "image_id": i, "category_id": ids[c], "bbox": box, "iscrowd": 0}
            for k, (i, c, box) in enumerate(notes)
        ],
        "categories": [{"id": ids[name], "name": name, "supercategory": "x"} for name in categories],
    }
    (folder / "annotations" / "instances_train2017.json").write_text(json.dumps(instances))


def test_crop_rule():
    # x = 10 - 0.5 * 30 * (1.2 - 1) = 7.000000000000001 (1.2 - 1 < 0.2 in floating point, as in Meta-Dataset's
    # arithmetic), so left = round(6.500000000000001) = 7; y = 16, top = round(15.5) = 16 (to even);
    # right = round(7 + 36 - 0.5) + 1 = 44 and bottom = round(63.5) + 1 = 65, clipped to 40 x 60
    assert crop_box([10, 20, 30, 40], 40, 60, 1.2) == (7, 16, 40, 60)
    # scale 1: left = round(9.5) = 10, right = round(39.5) + 1 = 41: the crop is w + 1 = 31 pixels wide
    assert crop_box([10, 20, 30, 40], 100, 100, 1.0) == (10, 20, 41, 61)
    assert crop_box([45.0, 10.0, 2.0, 2.0], 40, 40, 1.2) == (44, 9, 40, 13)  # x = 44.8, left 44 >= 40: empty


def _expected(folder, image_id: int, box: list, size: int) -> np.ndarray:
    with Image.open(folder / "train2017" / f"{image_id:012d}.jpg") as image:
        return fit_image(image.convert("RGB").crop(crop_box(box, *image.size, 1.2)), size)


def test_build_crops_in_annotation_order(tmp_path):
    make_coco(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="instances_train2017.json has no category 'airplane'"):
        prepare("md-mscoco", root=root, source=tmp_path / "src")  # strict: all 80 categories
    prepare("md-mscoco", root=root, source=tmp_path / "src", strict=False, image_size=16)
    val, test = open_split("md-mscoco", "val", root=root), open_split("md-mscoco", "test", root=root)
    assert val.classes == [VAL] and test.classes == [TEST] and val.image_size == (16, 16)
    assert val.images_per_class(0) == 3 and test.images_per_class(0) == 2  # the box outside its image is left out
    person = [n for n in NOTES if n[1] == VAL]
    for row, (image_id, _, box) in enumerate(person):
        np.testing.assert_array_equal(val.read(0, [row])[0], _expected(tmp_path / "src", image_id, box, 16))
    np.testing.assert_array_equal(test.read(0, [1])[0], _expected(tmp_path / "src", 632, NOTES[4][2], 16))
    with pytest.raises(UserError, match="--box-scale must be >= 1"):
        prepare("md-mscoco", root=root, source=tmp_path / "src", strict=False, box_scale=0.9, force=True)


def test_strict_counts_and_bad_sources(tmp_path, monkeypatch):
    fake_meta_dataset(
        monkeypatch, tmp_path / "shipped", "mscoco", {"train": [], "valid": [VAL], "test": [TEST]}, {VAL: 3, TEST: 2}
    )
    make_coco(tmp_path / "src", [*NOTES, (285, TEST, [5, 5, 10, 10])])
    root = tmp_path / "data"
    match = f"md-mscoco: class '{TEST}' has 3 images where Meta-Dataset's mscoco specification has 2"
    with pytest.raises(UserError, match=match):
        prepare("md-mscoco", root=root, source=tmp_path / "src")
    make_coco(tmp_path / "src")  # the box outside its image is not counted, as Meta-Dataset skips it
    prepare("md-mscoco", root=root, source=tmp_path / "src")
    before = {p.name: p.read_bytes() for p in (root / "md-mscoco").iterdir()}
    (tmp_path / "src" / "train2017" / "000000000285.jpg").unlink()
    with pytest.raises(UserError, match="image train2017/000000000285.jpg is annotated but missing"):
        prepare("md-mscoco", root=root, source=tmp_path / "src", force=True)
    Image.new("RGB", (10, 10)).save(tmp_path / "src" / "train2017" / "000000000285.jpg")
    with pytest.raises(UserError, match=r"000000000285.jpg is 10x10, instances_train2017.json says \(50, 70\)"):
        prepare("md-mscoco", root=root, source=tmp_path / "src", force=True)
    make_coco(tmp_path / "src", [(139, VAL, [1, 2, 3])])
    with pytest.raises(UserError, match=r"annotations\[0\] has bbox \[1, 2, 3\], not four numbers"):
        prepare("md-mscoco", root=root, source=tmp_path / "src", force=True)
    assert {p.name: p.read_bytes() for p in (root / "md-mscoco").iterdir()} == before
