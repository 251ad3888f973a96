"""md-dtd on a tiny dtd-r1.0.1.tar.gz (dtd/images/<class>/<class>_NNNN.jpg), extracted or read in place."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.sources import common, dtd, meta_dataset
from metahyper.data.storage import fit_image
from metahyper.errors import UserError
from tests.data.sources.md_helpers import assert_same_cache, tar_folder

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


def test_the_archive_read_in_place_gives_the_folders_cache(tmp_path):
    make_dtd(tmp_path / "src")
    archive = tar_folder(tmp_path / "src", tmp_path / "dl" / dtd.ARCHIVE, "dtd")
    prepare("md-dtd", root=tmp_path / "folder", source=tmp_path / "src", strict=False, image_size=20)
    prepare("md-dtd", root=tmp_path / "tar", source=archive, strict=False, image_size=20)
    assert_same_cache(tmp_path / "folder", tmp_path / "tar", "md-dtd")
    prepare("md-dtd", root=tmp_path / "beside", source=tmp_path / "dl", strict=False, image_size=20)  # its folder
    assert_same_cache(tmp_path / "folder", tmp_path / "beside", "md-dtd")
    assert not (tmp_path / "dl" / "dtd").exists()  # nothing extracted
    with pytest.raises(UserError, match="class 'chequered' has 3 images where Meta-Dataset's dtd specification has 1"):
        prepare("md-dtd", root=tmp_path / "strict", source=archive)  # counted from the headers, nothing decoded
    assert not (tmp_path / "strict").exists()


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "members, expected",
    [
        ({"dtd/labels/labels_joint_anno.txt": b"x"}, "holds no dtd/images/<class>/<image>"),
        ({"dtd/images/banded/../../../evil.jpg": b"x"}, "holds member 'dtd/images/banded/../../../evil.jpg', outside"),
        ({"/etc/banded.jpg": b"x"}, "holds member '/etc/banded.jpg', outside the archive's folder"),
        (
            {"dtd/images/banded/banded_0001.jpg": b"not a jpeg"},
            r"image .*dtd-r1.0.1.tar.gz:dtd/images/banded/banded_0001",
        ),
    ],
)
def test_bad_archives_are_refused_in_one_line(tmp_path, members, expected):
    archive = tmp_path / dtd.ARCHIVE
    _tar(archive, members)
    with pytest.raises(UserError, match=expected) as err:
        prepare("md-dtd", root=tmp_path / "data", source=archive, strict=False)
    assert "\n" not in str(err.value) and not list(tmp_path.glob("data/**/*_data.hdf5"))


def test_cut_or_foreign_archives_are_refused_before_decoding(tmp_path, monkeypatch):
    make_dtd(tmp_path / "src")
    whole = tar_folder(tmp_path / "src", tmp_path / "whole.tar.gz", "dtd").read_bytes()
    archive = tmp_path / dtd.ARCHIVE
    monkeypatch.setattr(meta_dataset, "tar_members", lambda *args: pytest.fail("members read before the checks"))
    for data in (whole[:-5], whole[:-200], whole[:100], b"not a tar archive at all" * 40):
        archive.write_bytes(data)
        with pytest.raises(UserError, match=f"{archive} is truncated or not a tar archive .*use --download") as err:
            prepare("md-dtd", root=tmp_path / "data", source=tmp_path, strict=False)
        assert "\n" not in str(err.value)
    monkeypatch.undo()
    archive.write_bytes(whole)
    monkeypatch.setattr(common, "MAX_FILE_BYTES", 100)  # each member is read whole: the largest is bounded
    with pytest.raises(UserError, match="more than the 0.0 MB its format holds"):
        prepare("md-dtd", root=tmp_path / "data", source=archive, strict=False)
    assert not (tmp_path / "data").exists()


def test_download_takes_a_good_copy_in_the_download_folder(tmp_path, monkeypatch):
    """No network: torchvision keeps the archive already in <root>/downloads/dtd/ when its md5 matches."""
    make_dtd(tmp_path / "src")
    root = tmp_path / "data"
    archive = tar_folder(tmp_path / "src", root / "downloads" / "dtd" / dtd.ARCHIVE, "dtd")
    monkeypatch.setattr(dtd, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("went to the network"))
    prepare("md-dtd", root=root, download=True, strict=False, image_size=20)
    prepare("md-dtd", root=tmp_path / "folder", source=tmp_path / "src", strict=False, image_size=20)
    assert_same_cache(tmp_path / "folder", root, "md-dtd")


@pytest.mark.skipif(os.environ.get("METAHYPER_NETWORK_TESTS") != "1", reason="set METAHYPER_NETWORK_TESTS=1")
def test_download_official(tmp_path):
    """The real release (about 600 MB): 33 / 7 / 7 classes of 120 images."""
    prepare("md-dtd", root=tmp_path, download=True, image_size=16)
    counts = [open_split("md-dtd", s, root=tmp_path).num_classes for s in ("train", "val", "test")]
    assert counts == [33, 7, 7]
