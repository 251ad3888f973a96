"""Bad inputs to `prepare` and `datasets`: one line naming the problem and the fix, exit code 2,
before any expensive work (cut archives, no network, a file as --root, sizes too large)."""

from __future__ import annotations

import csv
import socket

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metahyper.cli import main
from metahyper.data import prepare
from metahyper.data.sources import glyphs
from metahyper.errors import UserError
from tests.data.conftest import make_cifar100
from tests.faults.cache_helpers import temporaries


def _fails(args: list[str], *expected: str) -> str:
    res = CliRunner().invoke(main, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert all(e in lines[0] for e in expected), lines[0]
    return lines[0]


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_archive(tmp_path, keep):
    """A cut download (EOFError inside gzip/tar) is not reported as Ctrl-C ("Aborted!")."""
    whole = tmp_path / "whole.tar.gz"
    make_cifar100(whole)
    cut = tmp_path / "cifar-100-python.tar.gz"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    root = tmp_path / "data"
    _fails(["prepare", "fc100", "--source", str(cut), "--root", str(root)], str(cut), "re-download")
    _fails(["prepare", "cifar100", "--source", str(cut), "--root", str(root)], str(cut), "re-download")
    assert not temporaries(tmp_path)


@pytest.mark.parametrize(
    "dataset, url",
    [
        ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("omniglot", "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip"),
        ("cub", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"),
        ("md-dtd", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"),
        ("md-vgg-flower", "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat"),
    ],
)
def test_download_without_network(tmp_path, monkeypatch, dataset, url):
    def offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    _fails(["prepare", dataset, "--download", "--root", str(tmp_path / "data")], url, "check the network", "--source")


def test_root_is_a_file(tmp_path):
    root = tmp_path / "not-a-folder"
    root.write_text("x")
    _fails(["prepare", "glyphs", "--root", str(root)], str(root), "is a file")
    _fails(["prepare", "glyphs", "--root", str(root / "sub")], str(root), "is a file")
    _fails(["datasets", "--root", str(root)], str(root), "is a file")


def test_glyph_sizes_checked_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(glyphs, "glyph_classes", lambda *a, **k: pytest.fail("rendered before the size checks"))
    root = str(tmp_path / "data")
    _fails(["prepare", "glyphs", "--image-size", "100000", "--root", root], "--image-size 100000", "8..512")
    _fails(
        ["prepare", "glyphs", "--image-size", "512", "--max-memory", "0.5", "--root", root],
        "GB of memory",
        "0.5 GB allowed",
        "smaller --image-size",
    )
    _fails(
        ["prepare", "fc100", "--source", "x.tar.gz", "--max-memory", "1", "--root", root],
        "--max-memory does not apply to fc100",
    )
    _fails(["prepare", "glyphs", "--max-memory", "0", "--root", root], "--max-memory takes a positive number")
    with pytest.raises(UserError, match="GB of memory, more than the .* available"):
        prepare("glyphs", root=root, images_per_class=10**9)
    for dataset in ("omniglot", "cub"):  # other image sizes, checked before the source is read
        _fails(
            ["prepare", dataset, "--image-size", "100000", "--source", "nowhere", "--root", root],
            f"{dataset} at 100000 px needs about",
            "smaller --image-size",
        )
    assert not (tmp_path / "data").exists()


def test_decompression_bomb_refused_before_decoding(tmp_path):
    """A small PNG declaring 60,000 x 1,000 pixels (60 MP) in a MiniImageNet image folder."""
    src = tmp_path / "raw"
    (src / "images").mkdir(parents=True)
    Image.new("1", (60_000, 1_000)).save(src / "images" / "bomb.png")
    Image.fromarray(np.zeros((90, 90, 3), np.uint8)).save(src / "images" / "ok.png")
    for split, wnid in (("train", "n01532829"), ("val", "n01855672"), ("test", "n01930112")):
        with open(src / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["filename", "label"], ["bomb.png" if split == "val" else "ok.png", wnid]])
    with pytest.raises(UserError) as err:
        prepare("miniimagenet", root=tmp_path / "data", source=src, strict=False)
    assert "bomb.png is 60000x1000 pixels" in str(err.value) and "replace or remove it" in str(err.value)


def test_read_only_root(read_only_python):
    """A read-only filesystem (a tmpfs mounted ro in a user namespace): one line, before rendering."""
    mnt, run = read_only_python
    res = run("-m", "metahyper", "prepare", "glyphs", "--root", f"{mnt}/data")
    assert res.returncode == 2, res.stderr[-2000:]
    assert (
        res.stderr.strip()
        == f"Error: {mnt} is not writable; cannot write the glyphs cache under it; choose another cache root"
    )
