"""Omniglot builder on tiny zips in the official layout (binary 105x105 PNGs)."""

from __future__ import annotations

import io
import json
import os
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image

from metahyper.data import EpisodeSampler, list_caches, open_split, prepare
from metahyper.data.sources.omniglot import split_classes
from metahyper.data.storage import fit_image
from metahyper.errors import UserError

# two characters of each split, from both zips
PICK = {s: split_classes(s)[:1] + split_classes(s)[-1:] for s in ("train", "val", "test")}


def _drawing(rng: np.random.Generator) -> np.ndarray:
    """A 105x105 Omniglot-like drawing: black strokes (False) on white (True)."""
    img = np.ones((105, 105), dtype=bool)
    r, c = rng.integers(10, 80, size=2)
    img[r : r + 20, c : c + 4] = False
    img[r : r + 4, c : c + 15] = False
    return img


def make_omniglot(folder, per_class: int = 3, seed: int = 0, skip: int = 0) -> dict:
    """``images_background.zip`` + ``images_evaluation.zip`` holding the characters of PICK;
    returns {(part, alphabet, character): [bool drawing, ...]} in file-name order."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    zips = {part: zipfile.ZipFile(folder / f"{part}.zip", "w") for part in ("images_background", "images_evaluation")}
    for keys in PICK.values():
        for part, alphabet, character in keys:
            n = per_class - (skip if (part, alphabet, character) == PICK["val"][0] else 0)
            drawings = [_drawing(rng) for _ in range(n)]
            zips[part].writestr(f"__MACOSX/{part}/{alphabet}/._{character}", b"metadata")  # skipped
            for k, d in enumerate(drawings):
                buf = io.BytesIO()
                Image.fromarray(d).save(buf, format="PNG")  # mode "1", as the release
                zips[part].writestr(f"{part}/{alphabet}/{character}/0{k:03d}_{k + 1:02d}.png", buf.getvalue())
            written[(part, alphabet, character)] = drawings
    for z in zips.values():
        z.close()
    return written


def test_build_split_pixels_episode(tmp_path):
    written = make_omniglot(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="1617 characters of the Vinyals split are missing"):
        prepare("omniglot", root=root, source=tmp_path / "src")
    prepare(
        "omniglot",
        root=root,
        source=tmp_path / "src" / "images_background.zip",
        strict=False,
        image_size=20,
        per_class=3,
    )
    for split, keys in PICK.items():
        data = open_split("omniglot", split, root=root)
        assert data.classes == ["/".join(k) for k in keys] and data.image_size == (20, 20)
        labels = json.loads((root / "omniglot" / f"vinyals_{split}_labels.json").read_text())
        assert labels == [list(k) for k in keys]
        for c, key in enumerate(keys):
            inverted = Image.fromarray(np.where(written[key][2], 0, 255).astype(np.uint8))
            expected = fit_image(inverted, 20)
            np.testing.assert_array_equal(data.read(c, [2]), expected[None])
            image = data.read(c, [2])[0]
            assert image[0, 0].tolist() == [0, 0, 0] and image.max() > 128  # bright strokes on black
    with h5py.File(root / "omniglot" / "data.hdf5") as f:  # grayscale (n, S, S) as torchmeta stores Omniglot
        assert f["/".join(PICK["test"][0])].shape == (3, 20, 20)
    episode = EpisodeSampler(open_split("omniglot", "train", root=root), ways=2, shots=1, queries=2).episode(0)
    assert episode.query_x.shape == (4, 3, 20, 20)
    assert {r.dataset for r in list_caches(root) if r.error is None} == {"omniglot"}


def test_rotations_and_extracted_folders(tmp_path):
    written = make_omniglot(tmp_path / "src")
    for part in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(tmp_path / "src" / f"{part}.zip") as z:
            z.extractall(tmp_path / "extracted")  # test-made archive, trusted
    root = tmp_path / "data"
    prepare("omniglot", root=root, source=tmp_path / "extracted", strict=False, rotations=True, per_class=3)
    data = open_split("omniglot", "val", root=root)
    key = "/".join(PICK["val"][0])
    assert data.num_classes == 8 and data.image_size == (28, 28)
    assert data.classes[:4] == [key, f"{key}_rot180", f"{key}_rot270", f"{key}_rot90"]
    base = data.read(0, [0, 1, 2])
    np.testing.assert_array_equal(data.read(3, [0, 1, 2]), np.rot90(base, 1, axes=(1, 2)))
    np.testing.assert_array_equal(data.read(1, [1]), np.rot90(base[1:2], 2, axes=(1, 2)))
    assert written  # built from the same drawings as the zips


def test_bad_inputs(tmp_path):
    make_omniglot(tmp_path / "src", skip=1)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="2 images instead of 3"):
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, per_class=3)
    # a character outside the split, a corrupt PNG, a member outside the layout, a truncated zip
    with zipfile.ZipFile(tmp_path / "src" / "images_evaluation.zip", "a") as z:
        z.writestr("images_evaluation/Klingon/character01/0001_01.png", b"")
    with pytest.raises(UserError, match="1 characters outside the Vinyals split"):
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, per_class=3)
    make_omniglot(tmp_path / "src")
    prepare("omniglot", root=root, source=tmp_path / "src", strict=False, per_class=3)
    before = (root / "omniglot" / "data.hdf5").read_bytes()
    part, alphabet, character = PICK["train"][0]
    with zipfile.ZipFile(tmp_path / "src" / f"{part}.zip", "a") as z:
        z.writestr(f"{part}/{alphabet}/{character}/0999_99.png", b"\x89PNG not really")
    with pytest.raises(UserError, match="0999_99.png cannot be read") as err:
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, force=True, per_class=3)
    assert "\n" not in str(err.value)
    assert (root / "omniglot" / "data.hdf5").read_bytes() == before
    with zipfile.ZipFile(tmp_path / "src" / f"{part}.zip", "a") as z:
        z.writestr(f"{part}/../escape.png", b"")
    with pytest.raises(UserError, match="holds member 'images_background/../escape.png', outside the archive's folder"):
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, force=True, per_class=3)
    blob = (tmp_path / "src" / f"{part}.zip").read_bytes()
    (tmp_path / "src" / f"{part}.zip").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="truncated or not a zip archive"):
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, force=True, per_class=3)
    (tmp_path / "src" / f"{part}.zip").unlink()
    with pytest.raises(UserError, match="has neither images_background.zip nor images_background/"):
        prepare("omniglot", root=root, source=tmp_path / "src", strict=False, force=True, per_class=3)
    assert (root / "omniglot" / "data.hdf5").read_bytes() == before


@pytest.mark.skipif(os.environ.get("METAHYPER_NETWORK_TESTS") != "1", reason="set METAHYPER_NETWORK_TESTS=1")
def test_download_official(tmp_path):
    """The real release: 1,028 / 172 / 423 characters of 20 drawings (downloads about 9 MB)."""
    prepare("omniglot", root=tmp_path, download=True)
    counts = [open_split("omniglot", s, root=tmp_path).num_classes for s in ("train", "val", "test")]
    assert counts == [1028, 172, 423]
