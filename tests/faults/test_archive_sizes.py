"""Archives and images are not trusted for size: member sizes are checked from the headers before
any member is read, `prepare folder --image-size` is bounded and its memory estimated before any
image is read, and 16-bit images are scaled to 8 bits (or refused), never clipped."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metahyper.cli import main
from metahyper.data import open_split, prepare
from metahyper.data.sources.folder import MAX_IMAGE_SIZE
from metahyper.data.storage import to_8bit
from metahyper.errors import UserError
from metahyper.limits import ENV
from tests.data.conftest import make_cifar100
from tests.data.sources.test_cub import make_cub
from tests.faults.test_archive_layout import copy_with, files_under, no_member_is_read


def with_huge_member(src: Path, dst: Path, name: str, size: int) -> Path:
    """Uncompressed tar ``dst``: the members of ``src``, then member ``name`` of ``size`` zero
    bytes, left as a hole of a sparse file (the test writes a few kB)."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w") as out:
        for member in tar:
            if member.name != name:
                out.addfile(member, tar.extractfile(member) if member.isfile() else None)
        end = out.offset  # where the end-of-archive blocks begin
    info = tarfile.TarInfo(name)
    info.size = size
    with open(dst, "r+b") as f:
        f.seek(end)
        f.write(info.tobuf(format=tarfile.GNU_FORMAT))
        f.seek(-(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE, io.SEEK_CUR)
        f.write(bytes(2 * tarfile.BLOCKSIZE))
        f.truncate()
    return dst


def test_cifar_member_larger_than_its_format_is_refused_from_the_header(tmp_path, monkeypatch):
    make_cifar100(tmp_path / "whole.tar.gz")
    source = with_huge_member(
        tmp_path / "whole.tar.gz", tmp_path / "cifar-100-python.tar", "cifar-100-python/train", 2_500_000_000
    )
    with tarfile.open(source) as tar:
        assert tar.getmember("cifar-100-python/train").size == 2_500_000_000
    no_member_is_read(monkeypatch)
    result = CliRunner().invoke(main, ["prepare", "fc100", "--source", str(source), "--root", str(tmp_path / "d")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "member cifar-100-python/train is 2,384.2 MB" in lines[0]
    assert "more than the 351.6 MB its format holds" in lines[0]
    assert files_under(tmp_path / "d") == []


def test_members_that_do_not_fit_memory_are_refused_before_reading(tmp_path, monkeypatch):
    make_cifar100(tmp_path / "cifar-100-python.tar.gz")
    monkeypatch.setattr("metahyper.data.writing.available_memory", lambda: 1_000_000)
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=r"reading cifar-100-python/train .* needs about .* GB of memory"):
        prepare("fc100", root=tmp_path / "d", source=tmp_path / "cifar-100-python.tar.gz", strict=False)


def test_the_memory_override_bounds_builds_as_it_bounds_runs(tmp_path, monkeypatch):
    """``$METAHYPER_MAX_MEMORY_GB`` replaces the memory available in a build's check: lower refuses,
    higher lets a build through that the memory available now would refuse."""
    make_cifar100(tmp_path / "cifar-100-python.tar.gz")
    source = tmp_path / "cifar-100-python.tar.gz"
    monkeypatch.setenv(ENV, "0.0001")
    with pytest.raises(UserError, match=rf"more than the 0.0 GB that \${ENV} allows"):
        prepare("fc100", root=tmp_path / "low", source=source, strict=False)
    assert files_under(tmp_path / "low") == []
    monkeypatch.setattr("metahyper.data.writing.available_memory", lambda: 1_000_000)
    monkeypatch.setenv(ENV, "64")
    assert prepare("fc100", root=tmp_path / "high", source=source, strict=False)
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(UserError, match=rf"\${ENV} must be a positive number of GB, got 'lots'"):
        prepare("fc100", root=tmp_path / "bad", source=source, strict=False)


def test_miniimagenet_pickle_larger_than_the_dataset_is_refused(tmp_path, monkeypatch):
    with tarfile.open(tmp_path / "small.tar", "w") as tar:
        for split in ("train", "val", "test"):
            info = tarfile.TarInfo(f"mini-imagenet-cache-{split}.pkl")
            tar.addfile(info, io.BytesIO(b""))
    source = with_huge_member(
        tmp_path / "small.tar", tmp_path / "mini-imagenet.tar", "mini-imagenet-cache-train.pkl", 4_000_000_000
    )
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=r"member mini-imagenet-cache-train.pkl is 3,814.7 MB .* its format holds"):
        prepare("miniimagenet", root=tmp_path / "d", source=source, strict=False)


def test_cub_image_member_too_large_is_refused_before_decoding(tmp_path, monkeypatch):
    make_cub(tmp_path / "cub.tgz")
    with tarfile.open(tmp_path / "cub.tgz") as tar:
        image = next(m.name for m in tar if m.name.endswith(".jpg"))
    source = with_huge_member(tmp_path / "cub.tgz", tmp_path / "CUB_200_2011.tar", image, 3 * 2**30)
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=r"is 3,072.0 MB .*more than the 64.0 MB its format holds"):
        prepare("cub", root=tmp_path / "d", source=source, strict=False)


def _folder(tmp_path: Path, images: dict[str, Image.Image]) -> Path:
    source = tmp_path / "src"
    for name, image in images.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(source / name)
    return source


def test_folder_image_size_is_bounded_and_its_memory_estimated_before_reading(tmp_path, monkeypatch):
    source = _folder(tmp_path, {f"{c}/{i}.png": Image.new("RGB", (8, 8)) for c in "ab" for i in range(2)})
    root = tmp_path / "d"
    args = ["prepare", "folder", "--source", str(source), "--name", "x", "--split-ratios", "0,0,1"]
    result = CliRunner().invoke(main, [*args, "--root", str(root), "--image-size", "30000"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0, result.output
    assert f"--image-size 30000 is outside 1..{MAX_IMAGE_SIZE}" in result.output
    read = []
    monkeypatch.setattr("metahyper.data.sources.folder.load_image", lambda *a: read.append(a))
    monkeypatch.setattr("metahyper.data.writing.available_memory", lambda: 2**20)
    with pytest.raises(UserError, match=r"prepare folder at 1024 px \(class \w: 2 images\) needs about .*--image-size"):
        prepare("folder", root=root, source=source, name="x", split_ratios="0,0,1", image_size=1024)
    assert read == [] and files_under(root) == []


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535 in 257 steps
    source = _folder(tmp_path, {f"{c}/{i}.png": Image.fromarray(ramp) for c in "ab" for i in range(2)})
    with Image.open(source / "a" / "0.png") as opened:
        assert opened.mode == "I;16"
        assert np.array_equal(np.asarray(to_8bit(opened)), np.arange(256).reshape(16, 16))
    prepare("folder", root=tmp_path / "d", source=source, name="x", split_ratios="0,0,1", image_size=16)
    data = open_split("x", "test", root=tmp_path / "d")
    pixels = data.read(0, [0])[0]
    assert np.array_equal(pixels[..., 0], np.arange(256).reshape(16, 16))  # before: 255 from the second row on


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((4, 4), 70000, dtype=np.int32), "32-bit values 70000..70000, outside 16 bits"),
        (np.full((4, 4), 0.5, dtype=np.float32), "floating-point pixels"),
    ],
    ids=["32-bit", "float"],
)
def test_images_of_other_ranges_are_refused_naming_the_file(tmp_path, array, expected):
    images = {f"{c}/{i}.tif": Image.fromarray(np.zeros((4, 4), np.uint8)) for c in "ab" for i in range(2)}
    source = _folder(tmp_path, {**images, "b/1.tif": Image.fromarray(array)})
    with pytest.raises(UserError, match=rf"image .*b/1.tif cannot be read \(ValueError: {expected}.*replace or remove"):
        prepare("folder", root=tmp_path / "d", source=source, name="x", split_ratios="0,0,1", image_size=4)
    assert files_under(tmp_path / "d") == []


def test_copy_with_keeps_a_valid_archive(tmp_path):
    """The fixture of these tests: a copied archive still builds (the refusals above are the checks')."""
    make_cifar100(tmp_path / "whole.tar.gz")
    copy_with(tmp_path / "whole.tar.gz", tmp_path / "cifar-100-python.tar.gz", {})
    prepare("fc100", root=tmp_path / "d", source=tmp_path / "cifar-100-python.tar.gz", strict=False)
    assert open_split("fc100", "train", root=tmp_path / "d").num_classes == 60
