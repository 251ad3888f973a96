"""write_rows_hdf5: rows written in a source's own order give the file write_classes_hdf5 writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from metahyper.data.writing import HASH_ATTR, write_classes_hdf5, write_rows_hdf5


def test_rows_in_any_order_match_the_whole_array_writer(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (3, 4, 4, 3), np.uint8), rng.integers(0, 256, (2, 4, 4, 3), np.uint8)
    write_classes_hdf5(tmp_path / "whole.hdf5", [("datasets/a", a), ("datasets/x/b", b)])
    rows = [("datasets/x/b", 1, b[1]), ("datasets/a", 2, a[2]), ("datasets/a", 0, a[0])]
    rows += [("datasets/x/b", 0, b[0]), ("datasets/a", 1, a[1])]
    shapes = [{"datasets/a": a.shape}, {"datasets/x/b": b.shape}]
    write_rows_hdf5([tmp_path / "one.hdf5", tmp_path / "two.hdf5"], shapes, rows)
    write_rows_hdf5([tmp_path / "both.hdf5"], [{**shapes[0], **shapes[1]}], rows)
    with h5py.File(tmp_path / "whole.hdf5") as whole, h5py.File(tmp_path / "both.hdf5") as both:
        assert both.attrs[HASH_ATTR] == whole.attrs[HASH_ATTR]
        np.testing.assert_array_equal(both["datasets/x/b"][:], b)
    with h5py.File(tmp_path / "one.hdf5") as one:
        np.testing.assert_array_equal(one["datasets/a"][:], a)
    with h5py.File(tmp_path / "two.hdf5") as two:
        assert two.attrs[HASH_ATTR] == write_classes_hdf5(tmp_path / "b.hdf5", [("datasets/x/b", b)])


def test_a_row_left_unwritten_is_an_error(tmp_path):
    rows = [("datasets/a", 0, np.zeros((2, 2), np.uint8))]
    with pytest.raises(ValueError, match="datasets/a: 1 rows written, 2 declared"):
        write_rows_hdf5([tmp_path / "f.hdf5"], [{"datasets/a": (2, 2, 2)}], rows)
