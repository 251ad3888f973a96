"""md-quickdraw on tiny <class>.npy files in the release's layout (uint8 (n, 784) drawings)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.sources.meta_dataset import md_splits
from metahyper.data.writing import verify_file
from metahyper.errors import UserError
from tests.data.sources.md_helpers import fake_meta_dataset

SPLITS = md_splits("quickdraw")
PICK = {"train": SPLITS["train"][:2], "val": SPLITS["valid"][:1], "test": SPLITS["test"][:2]}


def make_quickdraw(folder, counts: dict[str, int], seed: int = 0, dtype=np.uint8) -> dict[str, np.ndarray]:
    """``folder/<class>.npy`` of ``counts[class]`` random 28x28 drawings each; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in counts.items():
        drawings = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        written[name] = drawings if dtype == np.uint8 else drawings > 127
        np.save(folder / f"{name}.npy", written[name])
    return written


def _resized(row: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(row.reshape(28, 28), "L").resize((size, size), Image.LANCZOS))


def test_build_read_and_cap(tmp_path):
    counts = {c: 3 + i for i, c in enumerate(c for cs in PICK.values() for c in cs)}
    written = make_quickdraw(tmp_path / "src" / "numpy_bitmap", counts)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="has no .*npy \\(QuickDraw class"):
        prepare("md-quickdraw", root=root, source=tmp_path / "src")  # strict: all 345 classes
    prepare("md-quickdraw", root=root, source=tmp_path / "src", strict=False, image_size=40, chunk=2)
    for split, classes in PICK.items():
        data = open_split("md-quickdraw", split, root=root)
        assert data.classes == classes and data.image_size == (40, 40) and data.storage == "gray"
        assert verify_file(data.path) is not None  # content hash and build id recorded
        for c, name in enumerate(classes):
            assert data.images_per_class(c) == counts[name]
            last = counts[name] - 1
            np.testing.assert_array_equal(data.read(c, [last])[0, ..., 1], _resized(written[name][last], 40))
    prepare("md-quickdraw", root=root, source=tmp_path / "src", strict=False, max_per_class=4, force=True)
    data = open_split("md-quickdraw", "train", root=root)
    assert [data.images_per_class(c) for c in range(2)] == [3, 4]  # 3 and 4 drawings; 4 and 5 capped at 4
    np.testing.assert_array_equal(data.read(1, [3])[0, ..., 0], _resized(written[PICK["train"][1]][3], 84))


def test_strict_counts_against_the_specification(tmp_path, monkeypatch):
    splits = {"train": ["cat", "dog"], "valid": ["axe"], "test": ["bee"]}
    counts = {"cat": 3, "dog": 2, "axe": 2, "bee": 4}
    fake_meta_dataset(monkeypatch, tmp_path / "shipped", "quickdraw", splits, counts)
    written = make_quickdraw(tmp_path / "src", counts, dtype=bool)
    root = tmp_path / "data"
    prepare("md-quickdraw", root=root, source=tmp_path / "src")
    data = open_split("md-quickdraw", "train", root=root)
    assert data.classes == ["cat", "dog"] and data.images_per_class(0) == 3
    np.testing.assert_array_equal(data.read(1, [1])[0, ..., 2], _resized(written["dog"][1].astype(np.uint8) * 255, 84))
    before = {p.name: p.read_bytes() for p in (root / "md-quickdraw").iterdir()}
    make_quickdraw(tmp_path / "src", {"dog": 1})
    with pytest.raises(
        UserError, match="md-quickdraw: class 'dog' has 1 images where Meta-Dataset's quickdraw specification has 2"
    ):
        prepare("md-quickdraw", root=root, source=tmp_path / "src", force=True)
    make_quickdraw(tmp_path / "src", {"dog": 2, "owl": 2})
    with pytest.raises(UserError, match="class 'owl' is in no Meta-Dataset QuickDraw split"):
        prepare("md-quickdraw", root=root, source=tmp_path / "src", force=True)
    (tmp_path / "src" / "owl.npy").unlink()
    np.save(tmp_path / "src" / "axe.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(UserError, match=r"axe.npy holds uint8 \(2, 28, 28\), not uint8 \(n, 784\)"):
        prepare("md-quickdraw", root=root, source=tmp_path / "src", force=True)
    with pytest.raises(UserError, match="md-quickdraw cache already exists"):
        prepare("md-quickdraw", root=root, source=tmp_path / "src")
    assert {p.name: p.read_bytes() for p in (root / "md-quickdraw").iterdir()} == before
    with pytest.raises(UserError, match="--max-per-class must be >= 1"):
        prepare("md-quickdraw", root=root, source=tmp_path / "src", max_per_class=0, force=True)
