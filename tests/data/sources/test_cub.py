"""CUB builder on a tiny CUB_200_2011.tgz in the official layout; torchmeta's JPEG-bytes cache read."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from metahyper.data import EpisodeSampler, list_caches, open_split, prepare
from metahyper.data.sources.cub import CROP, split_classes
from metahyper.data.storage import fit_image, write_encoded_split
from metahyper.errors import UserError

PICK = {s: split_classes(s)[:2] for s in ("train", "val", "test")}


def _jpeg(rng: np.random.Generator, w: int, h: int) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1) + rng.integers(0, 40, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_cub(path, per_class: int = 3, seed: int = 0, drop_last: bool = False) -> dict[str, dict[str, bytes]]:
    """``CUB_200_2011.tgz`` with PICK's classes (JPEGs of varied sizes, one grayscale), images.txt and
    classes.txt; returns {class: {file name: JPEG bytes}}."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, bytes]] = {}
    classes = sorted(c for cs in PICK.values() for c in cs)
    for c in classes:
        written[c] = {
            f"{c.split('.')[1]}_{k:04d}_{k}.jpg": _jpeg(rng, 90 + 17 * k, 70 + 9 * k) for k in range(per_class)
        }
    gray = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8)).save(gray, format="JPEG")
    written[classes[0]][f"{classes[0].split('.')[1]}_9999_9.jpg"] = gray.getvalue()  # CUB has a few grayscale JPEGs
    listed = [f"{c}/{n}" for c in classes for n in sorted(written[c])]
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(f"CUB_200_2011/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

        add("classes.txt", "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)).encode())
        for c in classes:
            for n, payload in written[c].items():
                if not (drop_last and f"{c}/{n}" == listed[-1]):
                    add(f"images/{c}/{n}", payload)
        add("images.txt", "".join(f"{i + 1} {p}\n" for i, p in enumerate(listed)).encode())
        add("attributes/certainties.txt", b"1 not sure\n")
    return written


def _expected(payload: bytes, size: int = 84) -> np.ndarray:
    with Image.open(io.BytesIO(payload)) as image:
        return fit_image(image, size, CROP)


def test_build_pixels_episode_and_torchmeta_cache(tmp_path):
    written = make_cub(tmp_path / "CUB_200_2011.tgz")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="6 classes and 19 images instead of 200 and 11788"):
        prepare("cub", root=root, source=tmp_path)
    prepare("cub", root=root, source=tmp_path, strict=False)
    for split, classes in PICK.items():
        data = open_split("cub", split, root=root)
        assert data.classes == classes and data.image_size == (84, 84) and data.storage == "rgb"
        for c, name in enumerate(classes):
            files = sorted(written[name])
            assert data.images_per_class(c) == len(files)
            np.testing.assert_array_equal(data.read(c, [1]), _expected(written[name][files[1]])[None])
    gray = open_split("cub", "train", root=root).read(0, [3])[0]
    assert np.array_equal(gray[..., 0], gray[..., 2])  # the grayscale JPEG became RGB
    # torchmeta's own CUB cache: the original JPEG bytes, file-name order; the same pixels
    tm = tmp_path / "torchmeta"
    write_encoded_split(
        tm, "cub", "train", {c: [written[c][n] for n in sorted(written[c])] for c in PICK["train"]}, PICK["train"]
    )
    ours, theirs = open_split("cub", "train", root=root), open_split("cub", "train", root=tm)
    assert theirs.storage == "encoded" and theirs.image_size == (84, 84)
    np.testing.assert_array_equal(theirs.read(0, [3, 0, 2]), ours.read(0, [3, 0, 2]))
    episode = EpisodeSampler(theirs, ways=2, shots=1, queries=2, seed=1).episode(0)
    assert episode.support_x.shape == (2, 3, 84, 84)
    assert [(r.split, r.error) for r in list_caches(tm)] == [("train", None)]


def test_extracted_folder_and_image_size(tmp_path):
    written = make_cub(tmp_path / "CUB_200_2011.tgz")
    with tarfile.open(tmp_path / "CUB_200_2011.tgz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    prepare("cub", root=tmp_path / "data", source=tmp_path / "x", strict=False, image_size=32)
    data = open_split("cub", "test", root=tmp_path / "data")
    name = PICK["test"][1]
    assert data.image_size == (32, 32)
    np.testing.assert_array_equal(data.read(1, [0]), _expected(written[name][sorted(written[name])[0]], 32)[None])


def test_bad_inputs(tmp_path):
    make_cub(tmp_path / "cub.tgz", drop_last=True)
    with pytest.raises(UserError, match="1 images listed in images.txt are missing"):
        prepare("cub", root=tmp_path / "data", source=tmp_path / "cub.tgz", strict=False)
    make_cub(tmp_path / "cub.tgz")
    prepare("cub", root=tmp_path / "data", source=tmp_path / "cub.tgz", strict=False)
    before = (tmp_path / "data" / "cub" / "val_data.hdf5").read_bytes()
    blob = (tmp_path / "cub.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="cut.tgz is truncated or not a tar archive") as err:
        prepare("cub", root=tmp_path / "data", source=tmp_path / "cut.tgz", strict=False, force=True)
    assert "\n" not in str(err.value)
    with tarfile.open(tmp_path / "cub.tgz", "r:gz") as tar, tarfile.open(tmp_path / "bad.tgz", "w:gz") as out:
        for member in tar:
            payload = tar.extractfile(member).read()
            if member.name.endswith("_0001_1.jpg") and PICK["val"][0] in member.name:
                payload = payload[:200]  # a truncated JPEG
                member.size = len(payload)
            out.addfile(member, io.BytesIO(payload))
    with pytest.raises(UserError, match=r"_0001_1.jpg cannot be decoded"):
        prepare("cub", root=tmp_path / "data", source=tmp_path / "bad.tgz", strict=False, force=True)
    assert (tmp_path / "data" / "cub" / "val_data.hdf5").read_bytes() == before
    with pytest.raises(UserError, match="holds neither CUB_200_2011.tgz nor CUB_200_2011/images/"):
        prepare("cub", root=tmp_path / "data", source=tmp_path / "data", strict=False, force=True)


@pytest.mark.skipif(os.environ.get("METAHYPER_NETWORK_TESTS") != "1", reason="set METAHYPER_NETWORK_TESTS=1")
def test_download_official(tmp_path):
    """The real release (1.1 GB): 100 / 50 / 50 classes, 11,788 images."""
    prepare("cub", root=tmp_path, download=True)
    splits = [open_split("cub", s, root=tmp_path) for s in ("train", "val", "test")]
    assert [d.num_classes for d in splits] == [100, 50, 50]
    assert sum(d.images_per_class(c) for d in splits for c in range(d.num_classes)) == 11788
