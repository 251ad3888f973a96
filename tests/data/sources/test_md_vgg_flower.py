"""md-vgg-flower on a tiny 102 Flowers release: imagelabels.mat (MATLAB 5) beside 102flowers.tgz or its
extracted jpg/."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.sources import vgg_flower
from metahyper.data.sources.vgg_flower import read_mat_vector
from metahyper.errors import UserError
from tests.data.sources.md_helpers import assert_same_cache, tar_folder

# image i (from 1) has label LABELS[i - 1]: 90 canna lily (train), 10 globe thistle (valid), 5 english marigold (test)
LABELS = [90, 5, 10, 90, 5, 90, 10, 5]
NAMES = {90: "090.canna lily", 10: "010.globe thistle", 5: "005.english marigold"}


def _element(kind: int, payload: bytes) -> bytes:
    """A MATLAB 5 data element: type, byte count, payload padded to 8 bytes; up to 4 bytes in the
    small element form (byte count and type in the tag's first 4 bytes, payload in the next 4)."""
    if len(payload) <= 4:
        return struct.pack("<HH", kind, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def mat_file(name: str, values: list[int], compressed: bool = True) -> bytes:
    """A MATLAB 5 MAT-file holding the 1 x n double ``name``, written as MATLAB -v7 writes
    imagelabels.mat (zlib-compressed, the integral doubles stored as miUINT8), or uncompressed
    with miDOUBLE values."""
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Feb 19 15:43:33 2009".ljust(116, b" ")
    header += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    stored = (2, bytes(values)) if compressed else (9, np.asarray(values, "<f8").tobytes())  # miUINT8, miDOUBLE
    data = _element(*stored)
    flags = _element(6, struct.pack("<II", 6, 0))  # mxDOUBLE_CLASS
    dims = _element(5, struct.pack("<ii", 1, len(values)))
    matrix = _element(14, flags + dims + _element(1, name.encode()) + data)
    if not compressed:
        return header + matrix
    packed = zlib.compress(matrix)
    return header + struct.pack("<II", 15, len(packed)) + packed


def make_flowers(top, labels=LABELS, compressed: bool = True) -> None:
    (top / "jpg").mkdir(parents=True)
    for i, label in enumerate(labels, start=1):
        pixels = np.full((30 + i, 40, 3), (label * 2, i * 20, 100), np.uint8)
        Image.fromarray(pixels).save(top / "jpg" / f"image_{i:05d}.jpg", quality=98, subsampling=0)
    (top / "imagelabels.mat").write_bytes(mat_file("labels", labels, compressed))


@pytest.mark.parametrize("compressed", [True, False])
def test_mat_reader(tmp_path, compressed):
    (tmp_path / "x.mat").write_bytes(mat_file("labels", LABELS, compressed))
    assert read_mat_vector(tmp_path / "x.mat", "labels", "fix").tolist() == LABELS
    with pytest.raises(UserError, match="holds no numeric variable 'setid'; fix"):
        read_mat_vector(tmp_path / "x.mat", "setid", "fix")


def test_build_groups_images_by_label(tmp_path):
    make_flowers(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="class '090.canna lily' has 3 images where Meta-Dataset's vgg_flower spec"):
        prepare("md-vgg-flower", root=root, source=tmp_path / "src")
    prepare("md-vgg-flower", root=root, source=tmp_path / "src", strict=False, image_size=12)
    for split, label in (("train", 90), ("val", 10), ("test", 5)):
        data = open_split("md-vgg-flower", split, root=root)
        assert data.classes == [NAMES[label]]
        images = [i for i, x in enumerate(LABELS, start=1) if x == label]  # file order
        stored = data.read(0, list(range(len(images))))[:, 6, 6].astype(int)
        assert np.abs(stored - [(label * 2, i * 20, 100) for i in images]).max() <= 3


def test_bad_label_files(tmp_path):
    make_flowers(tmp_path, labels=[90, 103])
    with pytest.raises(UserError, match="imagelabels.mat: label 103 is not a class 1..102"):
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path, strict=False)
    mat = tmp_path / "imagelabels.mat"
    mat.write_bytes(mat_file("labels", LABELS)[:-20])
    with pytest.raises(UserError, match="imagelabels.mat is truncated or corrupt") as err:
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path, strict=False)
    assert "\n" not in str(err.value)
    mat.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" "))
    with pytest.raises(UserError, match="is not a MATLAB 5 MAT-file"):
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path, strict=False)
    make_flowers(tmp_path / "short", labels=LABELS)
    (tmp_path / "short" / "jpg" / "image_00008.jpg").unlink()
    with pytest.raises(UserError, match="image .*image_00008.jpg is missing"):
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path / "short", strict=False)


def make_flowers_archive(top, labels=LABELS) -> None:
    """:func:`make_flowers`, its jpg/ packed into ``top/102flowers.tgz`` (reverse order) and removed."""
    make_flowers(top, labels)
    tar_folder(top, top / vgg_flower.ARCHIVE, "jpg")
    shutil.rmtree(top / "jpg")


def test_the_tgz_read_in_place_gives_the_folders_cache(tmp_path):
    make_flowers(tmp_path / "src")
    make_flowers_archive(tmp_path / "tgz")
    prepare("md-vgg-flower", root=tmp_path / "folder", source=tmp_path / "src", strict=False, image_size=12)
    prepare("md-vgg-flower", root=tmp_path / "tar", source=tmp_path / "tgz", strict=False, image_size=12)
    assert_same_cache(tmp_path / "folder", tmp_path / "tar", "md-vgg-flower")
    assert sorted(p.name for p in (tmp_path / "tgz").iterdir()) == [
        "102flowers.tgz",
        "imagelabels.mat",
    ]  # not extracted
    archive = tmp_path / "tgz" / vgg_flower.ARCHIVE
    prepare("md-vgg-flower", root=tmp_path / "file", source=archive, strict=False, image_size=12)  # the mat beside it
    assert_same_cache(tmp_path / "folder", tmp_path / "file", "md-vgg-flower")


def test_bad_tgz_is_refused_before_decoding(tmp_path, monkeypatch):
    from metahyper.data.sources import meta_dataset

    make_flowers_archive(tmp_path / "src")
    (tmp_path / "src" / "imagelabels.mat").write_bytes(mat_file("labels", [*LABELS, 5]))  # image 9: not in the tgz
    monkeypatch.setattr(meta_dataset, "tar_members", lambda *args: pytest.fail("members read before the checks"))
    with pytest.raises(UserError, match=r"image .*102flowers.tgz:jpg/image_00009.jpg is missing") as err:
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    archive = tmp_path / "src" / vgg_flower.ARCHIVE
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(UserError, match="102flowers.tgz is truncated or not a tar archive") as cut:
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("/jpg/image_00001.jpg"), io.BytesIO())  # add() would strip the "/"
    with pytest.raises(UserError, match="holds member '/jpg/image_00001.jpg', outside the archive's folder") as out:
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    archive.unlink()
    with pytest.raises(UserError, match="holds imagelabels.mat but neither 102flowers.tgz nor jpg/") as none:
        prepare("md-vgg-flower", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    assert all("\n" not in str(e.value) for e in (err, cut, out, none)) and not (tmp_path / "data").exists()


def test_download_takes_good_copies_in_the_download_folder(tmp_path, monkeypatch):
    """No network: torchvision keeps the files already in <root>/downloads/vgg_flower/ when their md5s match."""
    root = tmp_path / "data"
    folder = root / "downloads" / "vgg_flower"
    make_flowers_archive(folder)
    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in vgg_flower.MD5}
    monkeypatch.setattr(vgg_flower, "MD5", md5)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("went to the network"))
    prepare("md-vgg-flower", root=root, download=True, strict=False, image_size=12)
    make_flowers(tmp_path / "src")
    prepare("md-vgg-flower", root=tmp_path / "folder", source=tmp_path / "src", strict=False, image_size=12)
    assert_same_cache(tmp_path / "folder", root, "md-vgg-flower")


@pytest.mark.skipif(os.environ.get("METAHYPER_NETWORK_TESTS") != "1", reason="set METAHYPER_NETWORK_TESTS=1")
def test_download_official(tmp_path):
    """The real release (about 330 MB): 71 / 15 / 16 classes, 8,189 images."""
    prepare("md-vgg-flower", root=tmp_path, download=True, image_size=16)
    counts = [open_split("md-vgg-flower", s, root=tmp_path).num_classes for s in ("train", "val", "test")]
    assert counts == [71, 15, 16]
