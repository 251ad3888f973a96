"""md-cub on a tiny extracted CUB_200_2011 folder (images/<class>/<image>.jpg, images.txt)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.storage import fit_image
from metahyper.errors import UserError

# classes of Meta-Dataset's cu_birds split, in its file's order (not sorted)
PICK = {
    "train": ["190.Red_cockaded_Woodpecker", "144.Common_Tern"],
    "val": ["044.Frigatebird"],
    "test": ["008.Rhinoceros_Auklet", "009.Brewer_Blackbird"],
}


def make_cub(top, per_class: int = 3, seed: int = 0) -> dict[str, list]:
    """``top/CUB_200_2011/`` with PICK's classes (JPEGs of varied sizes) and images.txt; returns
    {class: [JPEG paths in file-name order]}."""
    rng = np.random.default_rng(seed)
    release = top / "CUB_200_2011"
    written, listed = {}, []
    for c in sorted(c for classes in PICK.values() for c in classes):
        (release / "images" / c).mkdir(parents=True)
        for k in range(per_class):
            name = f"{c.split('.')[1]}_{k:04d}_{100 + k}.jpg"
            pixels = rng.integers(0, 256, (30 + 9 * k, 44 - 4 * k, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(release / "images" / c / name, quality=95)
            listed.append(f"{c}/{name}")
        written[c] = sorted((release / "images" / c).iterdir())
    (release / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(listed)))
    return written


def test_build_uncropped_images_in_the_split_files_order(tmp_path):
    written = make_cub(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(
        UserError,
        match="md-cub: class '190.Red_cockaded_Woodpecker' has 3 images where Meta-Dataset's cu_birds specification "
        "has 58",
    ):
        prepare("md-cub", root=root, source=tmp_path / "src")
    prepare("md-cub", root=root, source=tmp_path / "src", strict=False, image_size=24)
    for split, classes in PICK.items():
        data = open_split("md-cub", split, root=root)
        assert data.classes == classes and data.image_size == (24, 24)  # Meta-Dataset's class-id order
        for c, name in enumerate(data.classes):
            assert data.images_per_class(c) == 3
            with Image.open(written[name][2]) as image:  # resized whole, no 1.15 crop
                np.testing.assert_array_equal(data.read(c, [2])[0], fit_image(image, 24))


def test_refusals(tmp_path):
    written = make_cub(tmp_path / "src")
    written["044.Frigatebird"][0].unlink()
    with pytest.raises(UserError, match=r"md-cub: image .*044.Frigatebird/Frigatebird_0000_100.jpg is missing"):
        prepare("md-cub", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    with pytest.raises(UserError, match="holds neither images.txt nor CUB_200_2011/images.txt; extract CUB_200_2011"):
        prepare("md-cub", root=tmp_path / "data", source=tmp_path, strict=False)
    assert not (tmp_path / "data").exists()
