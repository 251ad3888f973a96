"""Damaged or mixed caches: `metahyper datasets` reports them (content hash, labels from another
build, splits from different builds); `demo` names the broken file and never rebuilds a cache."""

from __future__ import annotations

import json

import h5py
import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.data import list_caches
from metahyper.data.writing import verify_file
from metahyper.demo import ensure_glyphs
from metahyper.errors import UserError
from tests.faults.cache_helpers import snapshot, write_tiny

FIX = "metahyper prepare miniimagenet --source PATH --force"


def _errors(root, deep: bool = False) -> dict[str, str | None]:
    return {r.split: r.error for r in list_caches(root, deep=deep)}


def test_flipped_bytes_fail_the_content_hash(tmp_path):
    root = tmp_path / "data"
    write_tiny(root, 5)
    path = root / "miniimagenet" / "val_data.hdf5"
    with h5py.File(path, "r") as f:
        offset = f["datasets/n00000001"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 7] ^= 0xFF
    path.write_bytes(bytes(data))
    assert all(e is None for e in _errors(root).values())  # only --deep reads every byte
    errors = _errors(root, deep=True)
    assert errors["train"] is None and errors["test"] is None
    assert "does not match its recorded content hash" in errors["val"] and FIX in errors["val"]
    res = CliRunner().invoke(main, ["datasets", "--root", str(root), "--deep"])
    assert res.exit_code == 0 and "ERROR: cache" in res.output and "content hash" in res.output


def test_labels_from_another_build(tmp_path):
    root, other = tmp_path / "data", tmp_path / "other"
    write_tiny(root, 5)
    write_tiny(other, 5, classes=4)
    (root / "miniimagenet" / "test_labels.json").write_bytes((other / "miniimagenet" / "test_labels.json").read_bytes())
    errors = _errors(root)
    assert "comes from another build or was modified" in errors["train"]  # every split lists the folder's labels
    assert "test_labels.json" in errors["test"]


def test_splits_from_different_builds(tmp_path):
    """What a --force rebuild that renamed only some of its files would leave."""
    root, other = tmp_path / "data", tmp_path / "other"
    write_tiny(root, 5)
    write_tiny(other, 5)  # same labels, another build
    for name in ("val_data.hdf5", "val_labels.json"):
        (root / "miniimagenet" / name).write_bytes((other / "miniimagenet" / name).read_bytes())
    assert all("come from different builds" in e for e in _errors(root).values())


def test_caches_without_hashes_still_validate(tmp_path):
    """torchmeta's caches (and earlier metahyper builds) record no hashes: nothing to check."""
    root = tmp_path / "data"
    write_tiny(root, 5)
    for split in ("train", "val", "test"):
        with h5py.File(root / "miniimagenet" / f"{split}_data.hdf5", "r+") as f:
            for name in list(f.attrs):
                del f.attrs[name]
    assert verify_file(root / "miniimagenet" / "train_data.hdf5") is None
    assert all(e is None for e in _errors(root).values())


@pytest.mark.parametrize("damage", ["broken-json", "missing-labels", "flipped-bytes"])
def test_demo_never_rebuilds_a_broken_glyphs_cache(tmp_path, damage):
    root = tmp_path / "data"
    folders = ("glyphs-a", "glyphs-b")
    write_tiny(root, 5, size=20, folders=folders)  # a user's cache: 20 px, 3 classes per split
    broken = root / "glyphs-b" / "val_labels.json"
    if damage == "broken-json":
        broken.write_text('["n00000000", ')
    elif damage == "missing-labels":
        broken.unlink()
    else:
        broken = root / "glyphs-b" / "val_data.hdf5"
        with h5py.File(broken, "r") as f:
            offset = f["datasets/n00000002"].id.get_offset()
        data = bytearray(broken.read_bytes())
        data[offset] ^= 1
        broken.write_bytes(bytes(data))
    before = snapshot(root)
    with pytest.raises(UserError) as err:
        ensure_glyphs(root, echo=lambda line: pytest.fail(f"started a build: {line}"))
    message = str(err.value)
    assert str(broken) in message and "metahyper prepare glyphs --force" in message and "\n" not in message
    assert snapshot(root) == before


def test_demo_uses_an_intact_cache_as_it_is(tmp_path):
    root = tmp_path / "data"
    write_tiny(root, 5, size=20, folders=("glyphs-a", "glyphs-b"))
    before = snapshot(root)
    ensure_glyphs(root, echo=lambda line: pytest.fail(f"started a build: {line}"))
    assert snapshot(root) == before
    assert json.loads((root / "glyphs-a" / "train_labels.json").read_text()) == ["n00000000", "n00000001", "n00000002"]
