"""md-omniglot on tiny official zips (images_<part>/<alphabet>/<character>/<drawing>.png)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.class_groups import class_groups
from metahyper.data.sources.meta_dataset import md_splits
from metahyper.data.storage import fit_image
from metahyper.errors import UserError

# (part, alphabet, character) of Meta-Dataset's train (2 alphabets), valid and test alphabets
PICK = {
    "train": [
        ("images_background", "Anglo-Saxon_Futhorc", "character01"),
        ("images_background", "Anglo-Saxon_Futhorc", "character02"),
        ("images_background", "Tifinagh", "character55"),
    ],
    "val": [("images_background", "Blackfoot_(Canadian_Aboriginal_Syllabics)", "character01")],
    "test": [("images_evaluation", "ULOG", "character26"), ("images_evaluation", "Angelic", "character01")],
}


def make_zips(folder, per_class: int = 3, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Both zips with PICK's characters (mode "1" PNGs, black strokes on white, as the release);
    returns {<alphabet>-<character>: [bool drawing, ...]} in file-name order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    zips = {part: zipfile.ZipFile(folder / f"{part}.zip", "w") for part in ("images_background", "images_evaluation")}
    written = {}
    for part, alphabet, character in (key for keys in PICK.values() for key in keys):
        drawings = [rng.random((105, 105)) > 0.1 for _ in range(per_class)]
        for k, drawing in enumerate(drawings):
            buf = io.BytesIO()
            Image.fromarray(drawing).save(buf, format="PNG")
            zips[part].writestr(f"{part}/{alphabet}/{character}/0{k:03d}_{k + 1:02d}.png", buf.getvalue())
        written[f"{alphabet}-{character}"] = drawings
    for z in zips.values():
        z.close()
    return written


def test_splits_are_the_specifications_alphabets():
    splits = md_splits("omniglot")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [883, 81, 659]  # 25 / 5 / 20 alphabets
    alphabets = {s: {c.rsplit("-", 1)[0] for c in names} for s, names in splits.items()}
    assert [len(alphabets[s]) for s in ("train", "valid", "test")] == [25, 5, 20]
    assert splits["train"][0] == "Anglo-Saxon_Futhorc-character01" and splits["test"][-1] == "ULOG-character26"


def test_build_pixels_order_and_alphabet_groups(tmp_path):
    written = make_zips(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(
        UserError,
        match="md-omniglot: class 'Anglo-Saxon_Futhorc-character01' has 3 images where Meta-Dataset's omniglot "
        "specification has 20",
    ):
        prepare("md-omniglot", root=root, source=tmp_path / "src")
    assert not root.exists()
    prepare("md-omniglot", root=root, source=tmp_path / "src", strict=False, image_size=28)
    for split, keys in PICK.items():
        data = open_split("md-omniglot", split, root=root)
        assert data.image_size == (28, 28)
        assert sorted(data.classes) == sorted(f"{a}-{c}" for _, a, c in keys)
        for c, name in enumerate(data.classes):
            expected = fit_image(Image.fromarray(written[name][1]), 28)  # not inverted, RGB
            np.testing.assert_array_equal(data.read(c, [1])[0], expected)
    test = open_split("md-omniglot", "test", root=root)
    assert test.classes == ["Angelic-character01", "ULOG-character26"]  # the specification's class-id order
    groups = class_groups(open_split("md-omniglot", "train", root=root))
    assert groups.kind == "superclass" and [g.tolist() for g in groups.groups] == [[0, 1], [2]]


def test_a_broken_drawing_is_named(tmp_path):
    make_zips(tmp_path / "src")
    with zipfile.ZipFile(tmp_path / "src" / "images_evaluation.zip", "a") as z:
        z.writestr("images_evaluation/ULOG/character26/0009_10.png", b"not a png")
    with pytest.raises(UserError, match=r"images_evaluation/ULOG/character26/0009_10.png cannot be decoded") as err:
        prepare("md-omniglot", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    assert "\n" not in str(err.value) and not list((tmp_path / "data").rglob("*.hdf5"))  # nothing half-written
