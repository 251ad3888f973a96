"""Archive members outside a release's documented layout (``../`` paths, absolute paths, files in
other folders, pickles in a subfolder) are refused in one line before any member is read, as
docs/datasets.md says; nothing is written, inside the target or outside it."""

from __future__ import annotations

import io
import pickle
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.data import prepare
from metahyper.errors import UserError
from tests.data.conftest import make_cifar100, mini_pickle
from tests.data.sources.md_helpers import tar_folder
from tests.data.sources.test_cub import make_cub
from tests.data.sources.test_md_dtd import make_dtd
from tests.data.sources.test_md_vgg_flower import make_flowers_archive
from tests.data.sources.test_tieredimagenet import make_tiered


def copy_with(src: Path, dst: Path, extra: dict[str, bytes]) -> Path:
    """``dst``: the members of tar ``src`` and then ``extra`` (member name -> bytes)."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w:gz") as out:
        for member in tar:
            out.addfile(member, tar.extractfile(member) if member.isfile() else None)
        for name, payload in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            out.addfile(info, io.BytesIO(payload))
    return dst


def no_member_is_read(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a member was read before the layout was checked")

    monkeypatch.setattr(tarfile.TarFile, "extractfile", refuse)


def files_under(folder: Path) -> list[Path]:
    """The files under ``folder`` (none when it does not exist)."""
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "member, expected",
    [
        ("../escape.txt", "holds member '../escape.txt', outside the archive's folder"),
        ("cifar-100-python/../../escape.txt", "outside the archive's folder"),
        ("/tmp/metahyper-escape.txt", "holds member '/tmp/metahyper-escape.txt', outside the archive's folder"),
        ("elsewhere/train", "holds elsewhere/train, outside the release's layout (cifar-100-python/<file>)"),
    ],
)
def test_fc100_refuses_members_outside_the_layout(tmp_path, monkeypatch, member, expected):
    whole = tmp_path / "whole.tar.gz"
    make_cifar100(whole)
    (tmp_path / "work").mkdir()
    source = copy_with(whole, tmp_path / "work" / "cifar-100-python.tar.gz", {member: b"x"})
    root = tmp_path / "work" / "data"
    no_member_is_read(monkeypatch)
    result = CliRunner().invoke(main, ["prepare", "fc100", "--source", str(source), "--root", str(root)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "pass the official cifar-100-python.tar.gz" in lines[0]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["cifar-100-python.tar.gz"]
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/metahyper-escape.txt").exists()


def test_miniimagenet_pickles_must_lie_at_the_top(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with tarfile.open(tmp_path / "mini-imagenet.tar.gz", "w:gz") as tar:
        for split in ("train", "val", "test"):
            payload = pickle.dumps(mini_pickle(split, 1, rng), protocol=4)
            info = tarfile.TarInfo(f"backup/old/mini-imagenet-cache-{split}.pkl")  # was matched by basename
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=r"holds backup/old/mini-imagenet-cache-\w+.pkl, outside the release's"):
        prepare("miniimagenet", root=tmp_path / "data", source=tmp_path / "mini-imagenet.tar.gz", strict=False)
    assert files_under(tmp_path / "data") == []


def test_tieredimagenet_pickles_outside_its_folder_are_refused(tmp_path, monkeypatch):
    make_tiered(tmp_path / "tiered-imagenet")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(tmp_path / "tiered-imagenet", arcname="tiered-imagenet")
        tar.add(tmp_path / "tiered-imagenet" / "val_labels.pkl", arcname="copies/old/val_labels.pkl")
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match="holds copies/old/val_labels.pkl, outside the release's layout"):
        prepare("tieredimagenet", root=tmp_path / "data", source=tmp_path / "t.tar", strict=False)
    assert files_under(tmp_path / "data") == []


@pytest.mark.parametrize(
    "member, expected",
    [
        ("CUB_200_2011/../../escape.jpg", "outside the archive's folder"),
        ("other/images/x.jpg", "holds other/images/x.jpg, outside the release's layout"),
    ],
)
def test_cub_refuses_members_outside_the_layout(tmp_path, monkeypatch, member, expected):
    make_cub(tmp_path / "cub.tgz")
    source = copy_with(tmp_path / "cub.tgz", tmp_path / "CUB_200_2011.tgz", {member: b"x"})
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=expected):
        prepare("cub", root=tmp_path / "data", source=source, strict=False)
    assert files_under(tmp_path / "data") == []


@pytest.mark.parametrize(
    "dataset, member, expected",
    [
        ("md-dtd", "dtd/images/banded/../../../../escape.jpg", "outside the archive's folder"),
        ("md-dtd", "/tmp/metahyper-escape.jpg", "holds member '/tmp/metahyper-escape.jpg', outside the archive's"),
        ("md-dtd", "other/images/banded/x.jpg", "holds other/images/banded/x.jpg, outside the release's layout (dtd/"),
        ("md-vgg-flower", "../image_00001.jpg", "holds member '../image_00001.jpg', outside the archive's folder"),
        (
            "md-vgg-flower",
            "old/jpg/image_00001.jpg",
            "holds old/jpg/image_00001.jpg, outside the release's layout (jpg/",
        ),
    ],
)
def test_md_archives_refuse_members_outside_the_layout(tmp_path, monkeypatch, dataset, member, expected):
    if dataset == "md-dtd":
        make_dtd(tmp_path / "extracted")
        source = tar_folder(tmp_path / "extracted", tmp_path / "src" / "dtd-r1.0.1.tar.gz", "dtd")
    else:
        make_flowers_archive(tmp_path / "src")
        source = tmp_path / "src" / "102flowers.tgz"
    copy_with(source, tmp_path / "copy.tgz", {member: b"x"}).replace(source)
    no_member_is_read(monkeypatch)
    with pytest.raises(UserError, match=re.escape(expected)) as err:
        prepare(dataset, root=tmp_path / "data", source=tmp_path / "src", strict=False)
    assert "\n" not in str(err.value) and files_under(tmp_path / "data") == []
    assert not (tmp_path / "escape.jpg").exists() and not Path("/tmp/metahyper-escape.jpg").exists()
