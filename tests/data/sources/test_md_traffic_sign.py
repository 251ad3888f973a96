"""md-traffic-sign on a tiny extracted GTSRB_Final_Training_Images.zip (GTSRB/Final_Training/Images/NNNNN/)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import EpisodeSampler, list_caches, open_split, prepare
from metahyper.data.writing import verify_file
from metahyper.errors import UserError

CLASSES = {0: "00.Speed limit (20km/h)", 14: "14.Stop", 42: "42.End of no passing by vehicles over 3.5 metric tons"}


def make_gtsrb(top, per_class: int = 4, seed: int = 0) -> None:
    """``top/GTSRB/Final_Training/Images/<NNNNN>/`` with ``per_class`` PPMs (track_image names,
    varied sizes) of a class-coloured image each, and the class's GT-<NNNNN>.csv."""
    rng = np.random.default_rng(seed)
    for number in CLASSES:
        folder = top / "GTSRB" / "Final_Training" / "Images" / f"{number:05d}"
        folder.mkdir(parents=True)
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for k in range(per_class):
            name, h, w = f"{k // 2:05d}_{k % 2:05d}.ppm", 25 + 3 * k, 27 + 2 * k
            pixels = np.full((h, w, 3), (number * 6, 255 - number * 6, 7 * k), np.uint8)
            pixels[h // 2, w // 2] = rng.integers(0, 256, 3)
            Image.fromarray(pixels).save(folder / name)
            rows.append(f"{name};{w};{h};5;5;{w - 5};{h - 5};{number}")
        (folder / f"GT-{number:05d}.csv").write_text("\n".join(rows) + "\n")


def test_build_test_split_with_named_signs(tmp_path):
    make_gtsrb(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(
        UserError, match=r"class '00.Speed limit \(20km/h\)' has 4 images where .* specification has 210"
    ):
        prepare("md-traffic-sign", root=root, source=tmp_path / "GTSRB")
    files = prepare("md-traffic-sign", root=root, source=tmp_path, strict=False, image_size=20)
    assert sorted(p.name for p in files) == ["test_data.hdf5", "test_labels.json"]  # no train or val classes
    data = open_split("md-traffic-sign", "test", root=root)
    assert data.classes == list(CLASSES.values()) and data.image_size == (20, 20)
    for c, number in enumerate(CLASSES):
        assert data.images_per_class(c) == 4  # GT-<NNNNN>.csv is skipped
        image = data.read(c, [3])[0].astype(int)  # the whole image, resized: its colour at the border too
        assert np.abs(image[0, 0] - (number * 6, 255 - number * 6, 21)).max() <= 2
    verify_file(root / "md-traffic-sign" / "test_data.hdf5")  # '/' in a class name: a nested HDF5 group
    assert [(r.split, r.error) for r in list_caches(root, deep=True) if r.dataset == "md-traffic-sign"] == [
        ("test", None)
    ]
    episode = EpisodeSampler(data, ways=3, shots=1, queries=2, seed=0).episode(0)
    assert episode.support_x.shape == (3, 3, 20, 20)


def test_missing_layout(tmp_path):
    (tmp_path / "GTSRB" / "Final_Training" / "Images").mkdir(parents=True)
    with pytest.raises(UserError, match="the source holds no class of Meta-Dataset's traffic_sign split file"):
        prepare("md-traffic-sign", root=tmp_path / "data", source=tmp_path, strict=False)
    with pytest.raises(UserError, match="holds neither Final_Training/Images nor GTSRB/Final_Training/Images"):
        prepare("md-traffic-sign", root=tmp_path / "data", source=tmp_path / "GTSRB" / "Final_Training")


def test_class_names_that_cannot_be_hdf5_paths(tmp_path):
    from metahyper.data.sources.meta_dataset import build_md_source

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    for names, bad in ((["14.Stop", "14.Stop/x"], "14.Stop"), (["14.Stop/"], "14.Stop/"), (["a/./x"], "a/./x")):
        with pytest.raises(UserError, match=f"class name '{bad}' cannot be an HDF5 path"):
            build_md_source(tmp_path, "md-x", "traffic_sign", {n: [(image, None)] for n in names}, 8, False, False)
