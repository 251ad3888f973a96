"""Crafted cache contents: what a cache declares (link kinds, image sizes, chunks, labels, a
manifest's statistics and sizes) is checked against limits, the manifest and the memory available
before any pixel is read; each problem is one line naming the file and the fix."""

from __future__ import annotations

import io
import json
import math
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metahyper.cli import main
from metahyper.data import list_caches, open_split, prepare
from metahyper.data.manifest import MIN_STD
from metahyper.data.storage import write_encoded_split
from metahyper.errors import UserError
from tests.conftest import make_image_folder
from tests.faults.cache_helpers import write_tiny

KEY = "datasets/n00000001"
FIX = "metahyper prepare miniimagenet --source PATH --force"


def _torchmeta_like(root: Path, folder: str = "miniimagenet") -> None:
    """Drop every attribute metahyper records: a cache crafted or written elsewhere."""
    for path in (root / folder).glob("*.hdf5"):
        with h5py.File(path, "r+") as f:
            for name in list(f.attrs):
                del f.attrs[name]


def _refused(name: str, split: str, root: Path, *expected: str, in_memory: bool = False, peak_mb: int = 32) -> str:
    """The one-line error of opening the split; nothing near the declared sizes was allocated."""
    tracemalloc.start()
    try:
        with pytest.raises(UserError) as err:
            open_split(name, split, root=root, in_memory=in_memory)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and all(e in message for e in expected), message
    assert peak < peak_mb << 20, f"allocated {peak / 2**20:.0f} MB before refusing"
    return message


def _eight_million(f: h5py.File, key: str) -> None:
    """A class of 8,000,000 images of 512x512 (6 TB declared) in a file of a few KB."""
    f.create_dataset(key, (8_000_000, 512, 512, 3), np.uint8, chunks=(1, 512, 512, 3), compression=9)


CRAFTED = {  # the val split's class KEY replaced by: (h5py.File, key) -> None; what the message says
    "60000x60000 images": (
        lambda f, k: f.create_dataset(k, (2, 60000, 60000, 3), np.uint8, chunks=(1, 500, 500, 3), compression=9),
        "declares 60000x60000 pixels",
    ),
    "zero-size images": (lambda f, k: f.create_dataset(k, (2, 0, 0, 3), np.uint8), "declares 0x0 pixels, no pixels"),
    "huge chunks": (
        lambda f, k: f.create_dataset(k, (400, 512, 512, 3), np.uint8, chunks=(400, 512, 512, 3), compression=9),
        "chunks of 300 MB",
    ),
    "float pixels": (lambda f, k: f.create_dataset(k, (2, 4, 4, 3), np.float32), "expected uint8"),
    "soft link to itself": (lambda f, k: f.__setitem__(k, h5py.SoftLink(f"/{k}")), "is a SoftLink, not a dataset"),
    "external link": (lambda f, k: f.__setitem__(k, h5py.ExternalLink("/etc/passwd", "/x")), "is a ExternalLink"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_declared_contents_are_refused_before_reading_a_pixel(tmp_path, case):
    root = tmp_path / "data"
    write_tiny(root, 5, size=512)
    make, expected = CRAFTED[case]
    with h5py.File(root / "miniimagenet" / "val_data.hdf5", "r+") as f:
        del f[KEY]
        make(f, KEY)
    for stamped in (True, False):  # our build's attributes, or none (a crafted or torchmeta cache)
        if not stamped:
            _torchmeta_like(root)
        _refused("miniimagenet", "val", root, expected, FIX, in_memory=True)
        assert open_split("miniimagenet", "train", root=root).image_size == (512, 512)  # the other splits still open
        rows = {r.split: r.error for r in list_caches(root)}
        assert expected in rows["val"] and rows["train"] is None and rows["test"] is None, rows
    res = CliRunner().invoke(main, ["datasets", "--root", str(root)])
    assert res.exit_code == 0 and "Traceback" not in res.output and expected in res.output, res.output


def test_a_large_class_opens_lazily_but_is_not_loaded_beyond_memory(tmp_path):
    """8,000,000 declared images are fine to list and to read one at a time, not to load."""
    root = tmp_path / "data"
    write_tiny(root, 5, size=512)
    with h5py.File(root / "miniimagenet" / "val_data.hdf5", "r+") as f:
        del f[KEY]
        _eight_million(f, KEY)
    data = open_split("miniimagenet", "val", root=root)
    assert data.images_per_class(1) == 8_000_000 and data.read(1, [7_999_999]).shape == (1, 512, 512, 3)
    message = _refused("miniimagenet", "val", root, "8,000,004 images of 512x512", "free memory", in_memory=True)
    assert FIX in message


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # a few KB declaring side x side pixels
    return buf.getvalue()


def test_encoded_image_headers_are_checked_before_decoding(tmp_path):
    root = tmp_path / "data"
    small, huge = _png(8), _png(9000)
    for split in ("train", "val", "test"):
        write_encoded_split(root, "cub", split, {"a": [small, small], "b": [small, huge]}, ["a", "b"])
    _refused("cub", "val", root, "image 1", "declares 9000x9000 pixels", "prepare cub", in_memory=True)
    data = open_split("cub", "val", root=root)  # the first image fixes the size; the bad one is met on reading
    assert data.read(0, [0, 1]).shape == (2, 84, 84, 3)
    with pytest.raises(UserError, match="declares 9000x9000 pixels"):
        data.read(1, [1])
    rows = {r.split: r.error for r in list_caches(root)}
    assert "declares 9000x9000 pixels" in rows["val"]  # `datasets` reads the last image


def test_a_class_listed_twice_is_refused(tmp_path):
    root = tmp_path / "data"
    write_tiny(root, 5)
    _torchmeta_like(root)  # our labels are also checked against their build's hash
    labels = root / "miniimagenet" / "test_labels.json"
    labels.write_text(json.dumps(["n00000001"] * 6))
    _refused("miniimagenet", "test", root, "lists class 'datasets/n00000001' 6 times", str(labels), FIX)


@pytest.fixture
def user_root(tmp_path) -> Path:
    root = tmp_path / "data"
    src = make_image_folder(tmp_path / "src", {f"class{i}": 2 for i in range(5)})
    prepare("folder", root=root, source=src, name="mine", image_size=8, progress=False)
    return root


@pytest.mark.parametrize(
    "field, value", [("std", math.nan), ("std", math.inf), ("std", 1e-300), ("mean", -math.inf), ("mean", 2.0)]
)
def test_manifest_statistics_must_be_finite_and_sane(user_root, field, value):
    path = user_root / "mine" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[field][1] = value
    path.write_text(json.dumps(manifest))  # json writes NaN / Infinity, as a hand edit might
    message = _refused("mine", "train", user_root, str(path), "is invalid", "prepare folder", "--force")
    assert f"in [{MIN_STD:g}, 1]" in message
    rows = [r for r in list_caches(user_root) if r.dataset == "mine"]
    assert len(rows) == 1 and "is invalid" in rows[0].error


def test_a_constant_source_still_gets_a_usable_std(tmp_path):
    src = tmp_path / "src"
    for c in range(5):
        (src / f"c{c}").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (10, 200, 30)).save(src / f"c{c}" / f"{i}.png")
    prepare("folder", root=tmp_path / "data", source=src, name="flat", image_size=8, progress=False)
    data = open_split("flat", "train", root=tmp_path / "data")
    assert data.normalization[1] == (MIN_STD,) * 3


@pytest.mark.parametrize(
    "field, value, expected", [("image_size", 16, "manifest says 16x16"), ("classes", 9, "says 9")]
)
def test_cache_must_match_its_manifest(user_root, field, value, expected):
    path = user_root / "mine" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest[field] = {**manifest["classes"], "train": value} if field == "classes" else value
    path.write_text(json.dumps(manifest))
    _torchmeta_like(user_root, "mine")  # the manifest is also checked against its build's hash
    _refused("mine", "train", user_root, expected, "prepare folder", "--force")


def test_datasets_reads_every_byte_only_with_deep(tmp_path):
    """A damaged image in the middle of a cache recording no hashes (as torchmeta's): the default
    check reads structure and the last image; --deep decodes every image."""
    root = tmp_path / "data"
    small = _png(8)
    for split in ("train", "val", "test"):
        write_encoded_split(root, "cub", split, {"a": [small] * 3}, ["a"])
    with h5py.File(root / "cub" / "val_data.hdf5", "r+") as f:
        for name in list(f.attrs):
            del f.attrs[name]
        f["datasets/a"][1] = np.frombuffer(b"not a png", np.uint8)
    res = CliRunner().invoke(main, ["datasets", "--root", str(root)])
    assert res.exit_code == 0 and "ERROR" not in res.output, res.output
    res = CliRunner().invoke(main, ["datasets", "--root", str(root), "--deep"])
    lines = [line for line in res.output.splitlines() if "ERROR" in line]
    assert res.exit_code == 0 and len(lines) == 1 and lines[0].startswith("cub"), res.output
    assert "class datasets/a, image 1 cannot be decoded" in lines[0] and "prepare cub" in lines[0]
