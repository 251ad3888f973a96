"""A stand-in for the shipped Meta-Dataset files, so that a builder's strict mode (every class of
the split file, the specification's counts) runs on a tiny generated source."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import h5py
import numpy as np

from metahyper.data import layouts


def fake_meta_dataset(monkeypatch, folder: Path, source: str, splits: dict[str, list[str]], counts: dict[str, int]):
    """Shipped split files read from ``folder``, holding ``source``'s ``splits`` (``train`` /
    ``valid`` / ``test``) and a specification of ``counts`` in Meta-Dataset's format (indices in
    split order)."""
    md = folder / "meta-dataset"
    (md / "splits").mkdir(parents=True)
    (md / "dataset_specs").mkdir()
    (md / "splits" / f"{source}_splits.json").write_text(json.dumps(splits))
    order = [c for s in ("train", "valid", "test") for c in splits.get(s, [])]
    spec = {
        "name": source,
        "classes_per_split": {s.upper(): len(splits.get(s, [])) for s in ("train", "valid", "test")},
        "images_per_class": {str(i): counts[c] for i, c in enumerate(order)},
        "class_names": {str(i): c for i, c in enumerate(order)},
        "__class__": "DatasetSpecification",
    }
    (md / "dataset_specs" / f"{source}_dataset_spec.json").write_text(json.dumps(spec))
    monkeypatch.setattr(layouts, "splits_dir", lambda: folder)


def tar_folder(folder: Path, archive: Path, top: str) -> Path:
    """``archive`` (gzipped tar) of ``folder/top`` with member names ``top/...``, written in reverse
    sorted order, so that a reader relying on the archive's order is caught; returns it."""
    paths = sorted(p for p in (folder / top).rglob("*"))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in [folder / top, *reversed(paths)]:
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return archive


def _datasets(group: h5py.Group) -> list[str]:
    keys: list[str] = []
    group.visititems(lambda key, item: keys.append(key) if isinstance(item, h5py.Dataset) else None)
    return sorted(keys)


def assert_same_cache(root: Path, other: Path, dataset: str) -> None:
    """The two builds of ``dataset`` hold the same splits, class lists and HDF5 datasets."""
    files = sorted(p.name for p in (root / dataset).iterdir() if p.suffix in (".hdf5", ".json"))
    assert files == sorted(p.name for p in (other / dataset).iterdir() if p.suffix in (".hdf5", ".json"))
    for name in files:
        if name.endswith("_labels.json"):
            assert json.loads((root / dataset / name).read_text()) == json.loads((other / dataset / name).read_text())
        elif name.endswith("_data.hdf5"):
            with h5py.File(root / dataset / name, "r") as a, h5py.File(other / dataset / name, "r") as b:
                keys = _datasets(a["datasets"])
                assert keys and keys == _datasets(b["datasets"])
                for key in keys:
                    np.testing.assert_array_equal(a["datasets"][key][()], b["datasets"][key][()])
