"""write_chunked_hdf5: the same datasets and content hash as write_classes_hdf5, chunk by chunk."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from metahyper.data.writing import HASH_ATTR, content_sha256, write_chunked_hdf5, write_classes_hdf5


def test_same_content_and_hash_as_whole_arrays(tmp_path):
    rng = np.random.default_rng(0)
    classes = {
        "datasets/a b": rng.integers(0, 256, (5, 4, 4, 3), np.uint8),
        "datasets/c": np.zeros((3, 4, 4), np.uint8),
    }
    whole = write_classes_hdf5(tmp_path / "whole.hdf5", classes.items())
    items = [(k, a.shape, np.array_split(a, [2, 4])) for k, a in classes.items()]  # chunks of 2, 2 and the rest
    assert write_chunked_hdf5(tmp_path / "chunked.hdf5", items) == whole
    with h5py.File(tmp_path / "chunked.hdf5", "r") as f:
        assert f.attrs[HASH_ATTR] == whole == content_sha256(f)
        np.testing.assert_array_equal(f["datasets/a b"][:], classes["datasets/a b"])


def test_chunks_must_fill_the_declared_shape(tmp_path):
    with pytest.raises(ValueError, match="2 rows written, 3 declared"):
        write_chunked_hdf5(tmp_path / "x.hdf5", [("d", (3, 2, 2), [np.zeros((2, 2, 2))])])
    with pytest.raises(ValueError, match=r"does not fit \(3, 2, 2\)"):
        write_chunked_hdf5(tmp_path / "x.hdf5", [("d", (3, 2, 2), [np.zeros((4, 2, 2))])])
