"""Cache reader: layout, lazy per-process reads, RAM mode, and one-line errors."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest

from metahyper.data import default_root, list_caches, open_split
from metahyper.data.layouts import splits_dir
from metahyper.data.writing import check_writable
from metahyper.errors import UserError


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("METAHYPER_DATA", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("METAHYPER_DATA")
    assert default_root().parts[-2:] == ("datasets", "data")  # source checkout


def test_split_files_shipped():
    d = splits_dir()
    lists = {s: (d / "miniimagenet" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(lists[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    assert len(set().union(*lists.values())) == 100
    fc = json.loads((d / "fc100.json").read_text())
    assert sorted(fc["train"] + fc["val"] + fc["test"]) == list(range(20))


def test_read_lazy_and_in_memory(tagged_root):
    data = open_split("miniimagenet", "train", root=tagged_root)
    assert data.num_classes == 12 and data.image_size == (8, 8) and data.images_per_class(3) == 30
    assert data.classes[0] == "n00000000"
    x = data.read(3, [5, 1, 5, 29])  # unsorted, repeated
    assert x.dtype == np.uint8 and x.shape == (4, 8, 8, 3)
    assert x[:, 0, 0, 0].tolist() == [3, 3, 3, 3] and x[:, 0, 0, 1].tolist() == [5, 1, 5, 29]
    ram = open_split("miniimagenet", "train", root=tagged_root, in_memory=True)
    np.testing.assert_array_equal(ram.read(3, [5, 1, 5, 29]), x)
    idx = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(ram.read_many([4, 7], idx), data.read_many([4, 7], idx))
    clone = pickle.loads(pickle.dumps(data))  # handles are dropped and reopened
    np.testing.assert_array_equal(clone.read(3, [1]), x[1:2])


def test_torchmeta_layout_reads_unchanged(tmp_path):
    """A cache laid out exactly as torchmeta writes FC100 (coarse/fine groups, [coarse, fine] labels)."""
    root = tmp_path
    with h5py.File(root / "data.hdf5", "w") as f:  # written with h5py as torchmeta does
        f.create_group("fish").create_dataset("ray", data=np.full((600, 32, 32, 3), 9, np.uint8))
        f["fish"].create_dataset("shark", data=np.zeros((600, 32, 32, 3), np.uint8))
    (root / "cifar100" / "fc100").mkdir(parents=True)
    (root / "data.hdf5").rename(root / "cifar100" / "data.hdf5")
    (root / "cifar100" / "fine_names.json").write_text(json.dumps({"fish": ["ray", "shark"]}))
    (root / "cifar100" / "fc100" / "test_labels.json").write_text(json.dumps([["fish", "ray"], ["fish", "shark"]]))
    data = open_split("fc100", "test", root=root)
    assert data.classes == ["fish/ray", "fish/shark"] and data.read(0, [599]).max() == 9
    [row] = list_caches(root)
    assert (row.dataset, row.split, row.classes, row.images_per_class, row.image_size, row.error) == (
        "fc100",
        "test",
        2,
        "600",
        "32x32",
        None,
    )


# ---- bad inputs: each a one-line UserError naming the file and the fix ---------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_unknown_dataset(tmp_path):
    with pytest.raises(UserError) as err:
        open_split("imagenet21k", "train", root=tmp_path)
    assert "unknown dataset 'imagenet21k'" in _one_line(err) and "miniimagenet" in str(err.value)


def test_missing_cache_file(tmp_path):
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "val", root=tmp_path)
    assert "val_data.hdf5" in _one_line(err) and "metahyper prepare miniimagenet" in str(err.value)


def test_corrupt_hdf5(tagged_root):
    path = tagged_root / "miniimagenet" / "val_data.hdf5"
    path.write_bytes(b"not an hdf5 file at all" * 100)
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "val", root=tagged_root)
    assert "truncated or corrupt" in _one_line(err) and str(path) in str(err.value) and "--force" in str(err.value)


def test_truncated_hdf5(tagged_root):
    path = tagged_root / "miniimagenet" / "train_data.hdf5"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError) as err:
        data = open_split("miniimagenet", "train", root=tagged_root, in_memory=True)
        data.read(11, [29])
    assert "truncated or corrupt" in _one_line(err)
    rows = {r.split: r for r in list_caches(tagged_root)}
    assert rows["train"].error and rows["val"].error is None


def test_wrong_layout_shape_dtype_missing_class(tagged_root):
    folder = tagged_root / "miniimagenet"
    with h5py.File(folder / "test_data.hdf5", "a") as f:
        del f["datasets/n00000002"]
        f.create_dataset("datasets/n00000002", data=np.zeros((30, 8, 8), np.float32))
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "test", root=tagged_root)
    assert "n00000002" in _one_line(err) and "uint8" in str(err.value)
    labels = json.loads((folder / "val_labels.json").read_text())
    (folder / "val_labels.json").write_text(json.dumps(labels + ["n99999999"]))
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "val", root=tagged_root)
    assert "val_labels.json comes from another build or was modified" in _one_line(err)
    with h5py.File(folder / "val_data.hdf5", "a") as f:
        del f.attrs["metahyper_files"]  # as torchmeta's caches: no build recorded to compare with
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "val", root=tagged_root)
    assert "no class dataset 'datasets/n99999999'" in _one_line(err)
    (folder / "val_labels.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(UserError) as err:
        open_split("miniimagenet", "val", root=tagged_root)
    assert "wrong layout" in _one_line(err)


def test_refuse_overwrite(tmp_path):
    target = tmp_path / "a" / "x.json"
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(UserError, match="--force"):
        check_writable([target], force=False, what="x")
    check_writable([target], force=True, what="x")
    assert target.read_text() == "old"


def test_torchmeta_omniglot_and_encoded_caches_read(tmp_path):
    """Caches laid out as torchmeta writes them: Omniglot grayscale (n, 105, 105) under
    images_*/alphabet/character with vinyals_ labels; tieredImageNet PNG bytes (vlen uint8)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "omniglot").mkdir()
    drawings = rng.integers(0, 2, (20, 105, 105), dtype=np.uint8) * 255
    with h5py.File(tmp_path / "omniglot" / "data.hdf5", "w") as f:
        f.create_group("images_evaluation").create_dataset("Keble/character01", data=drawings)
    labels = [["images_evaluation", "Keble", "character01"]]
    (tmp_path / "omniglot" / "vinyals_test_labels.json").write_text(json.dumps(labels))
    data = open_split("omniglot", "test", root=tmp_path)
    assert data.classes == ["images_evaluation/Keble/character01"] and data.image_size == (105, 105)
    np.testing.assert_array_equal(data.read(0, [7]), np.repeat(drawings[7:8, :, :, None], 3, axis=-1))
    images = rng.integers(0, 256, (4, 84, 84, 3), dtype=np.uint8)
    pngs = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        pngs.append(np.frombuffer(buf.getvalue(), np.uint8))
    (tmp_path / "tieredimagenet").mkdir()
    with h5py.File(tmp_path / "tieredimagenet" / "val_data.hdf5", "w") as f:
        ds = f.create_group("datasets").create_dataset("n02099267", (4,), dtype=h5py.special_dtype(vlen=np.uint8))
        for i, png in enumerate(pngs):
            ds[i] = png
    (tmp_path / "tieredimagenet" / "val_labels.json").write_text(json.dumps(["n02099267"]))
    data = open_split("tieredimagenet", "val", root=tmp_path)
    assert data.storage == "encoded" and data.image_size == (84, 84)
    np.testing.assert_array_equal(data.read(0, [3, 1, 3]), images[[3, 1, 3]])
    rows = {(r.dataset, r.split): r for r in list_caches(tmp_path)}
    assert rows["omniglot", "test"].error is None and rows["tieredimagenet", "val"].image_size == "84x84"
    data.close()
    with h5py.File(tmp_path / "tieredimagenet" / "val_data.hdf5", "a") as f:
        f["datasets/n02099267"][3] = np.frombuffer(b"\x89PNG\r\n\x1a\n broken", np.uint8)
    with pytest.raises(UserError, match="image 3 cannot be decoded.*--force") as err:
        open_split("tieredimagenet", "val", root=tmp_path).read(0, [3])
    assert "\n" not in str(err.value)
    rows = {(r.dataset, r.split): r for r in list_caches(tmp_path)}
    assert "image 3 cannot be decoded" in rows["tieredimagenet", "val"].error  # the last image is checked
