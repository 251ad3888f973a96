"""md-dtd on a tiny extracted dtd-r1.0.1.tar.gz (dtd/images/<class>/<class>_NNNN.jpg)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.storage import fit_image
from metahyper.errors import UserError

PICK = {"train": ["chequered", "waffled"], "val": ["gauzy"], "test": ["woven", "banded"]}  # banded: 1st test class


def make_dtd(top, per_class: int = 3, seed: int = 0) -> dict[str, list]:
    """``top/dtd/images/<class>/`` with ``per_class`` JPEGs of varied sizes each (and the release's
    leftover ``waffled/.directory``); returns {class: [JPEG paths in sorted order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for classes in PICK.values():
        for c in classes:
            folder = top / "dtd" / "images" / c
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 256, (40 + 7 * k, 50 + 5 * k, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{c}_{k + 1:04d}.jpg", quality=95)
            written[c] = sorted(folder.iterdir())
    (top / "dtd" / "images" / "waffled" / ".directory").write_text("[Dolphin]\n")
    (top / "dtd" / "labels").mkdir()
    (top / "dtd" / "labels" / "labels_joint_anno.txt").write_text("banded/banded_0001.jpg banded\n")
    return written


def test_build_splits_order_and_pixels(tmp_path):
    written = make_dtd(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(
        UserError, match="md-dtd: class 'chequered' has 3 images where Meta-Dataset's dtd specification has 120"
    ):
        prepare("md-dtd", root=root, source=tmp_path / "src")
    assert not root.exists()  # refused before anything is written
    prepare("md-dtd", root=root, source=tmp_path / "src", strict=False, image_size=32)
    for split, classes in PICK.items():
        data = open_split("md-dtd", split, root=root)
        assert data.image_size == (32, 32) and sorted(data.classes) == sorted(classes)
        for c, name in enumerate(data.classes):
            assert data.images_per_class(c) == 3  # waffled/.directory is not an image
            with Image.open(written[name][2]) as image:
                np.testing.assert_array_equal(data.read(c, [2])[0], fit_image(image, 32))
    assert open_split("md-dtd", "test", root=root).classes == ["banded", "woven"]  # the split file's order


def test_refusals_leave_the_cache(tmp_path):
    written = make_dtd(tmp_path / "src")
    root = tmp_path / "data"
    prepare("md-dtd", root=root, source=tmp_path / "src" / "dtd", strict=False, image_size=16)
    before = (root / "md-dtd" / "val_data.hdf5").read_bytes()
    with pytest.raises(UserError, match="md-dtd cache already exists"):
        prepare("md-dtd", root=root, source=tmp_path / "src", strict=False)
    written["woven"][1].write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=r"image .*woven_0002.jpg cannot be decoded") as err:
        prepare("md-dtd", root=root, source=tmp_path / "src", strict=False, force=True)
    assert "\n" not in str(err.value)
    assert (root / "md-dtd" / "val_data.hdf5").read_bytes() == before
    (tmp_path / "src" / "dtd" / "images" / "velvet").mkdir()
    (tmp_path / "src" / "dtd" / "images" / "velvet" / "velvet_0001.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="class 'velvet' is in no split of Meta-Dataset's dtd split file"):
        prepare("md-dtd", root=root, source=tmp_path / "src", strict=False, force=True)
    with pytest.raises(UserError, match="holds neither images nor dtd/images"):
        prepare("md-dtd", root=root, source=tmp_path, strict=False, force=True)
    with pytest.raises(UserError, match="--image-size 2000 is outside 1..1024"):
        prepare("md-dtd", root=root, source=tmp_path / "src", image_size=2000)


def test_a_built_cache_is_checked_against_the_specification(tmp_path, monkeypatch):
    from metahyper.data.sources import meta_dataset

    make_dtd(tmp_path / "src", per_class=2)
    prepare("md-dtd", root=tmp_path / "data", source=tmp_path / "src", strict=False, image_size=8)
    with pytest.raises(
        UserError, match="md-dtd: class 'chequered' has 2 images where Meta-Dataset's dtd specification has 120"
    ):
        meta_dataset.check_cache_counts("md-dtd", "dtd", tmp_path / "data")
    built = {c: 2 for classes in PICK.values() for c in classes}
    monkeypatch.setattr(meta_dataset, "spec_counts", lambda source: built)
    meta_dataset.check_cache_counts("md-dtd", "dtd", tmp_path / "data")  # every split's classes, counted
    monkeypatch.setattr(meta_dataset, "spec_counts", lambda source: {**built, "woven": 3})
    with pytest.raises(UserError, match="class 'woven' has 2 images where Meta-Dataset's dtd specification has 3"):
        meta_dataset.check_cache_counts("md-dtd", "dtd", tmp_path / "data")
