"""CIFAR-FS builder (Bertinetto et al. split) on a tiny cifar-100-python.tar.gz, beside FC100."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metahyper.data import EpisodeSampler, list_caches, open_split, prepare
from metahyper.data.layouts import read_split_file
from metahyper.errors import UserError
from tests.data.conftest import FINE


def test_cifar_fs_split_pixels_and_shared_file(tmp_path, cifar100_tar):
    src, written = cifar100_tar
    root = tmp_path / "data"
    with pytest.raises(UserError, match="3 images instead of 600"):
        prepare("cifar-fs", root=root, source=src)
    prepare("fc100", root=root, source=src, strict=False)
    prepare("cifar-fs", root=root, source=src, strict=False)  # shares data.hdf5 with fc100: no --force needed
    with pytest.raises(UserError, match="cifar-fs cache already exists.*--force"):
        prepare("cifar-fs", root=root, source=src, strict=False)
    for split, n in (("train", 64), ("val", 16), ("test", 20)):
        data = open_split("cifar-fs", split, root=root)
        shipped = read_split_file(f"cifar-fs/{split}.json")
        assert data.num_classes == n and data.classes == ["/".join(x) for x in shipped]
        assert json.loads((root / "cifar100" / "cifar-fs" / f"{split}_labels.json").read_text()) == shipped
    data = open_split("cifar-fs", "val", root=root)
    c = data.classes.index("insects/butterfly")
    fine = FINE.index("butterfly")
    merged = np.concatenate([written[s][0][written[s][1] == fine] for s in ("train", "test")])
    np.testing.assert_array_equal(data.read(c, [0, 1, 2]), merged)
    assert EpisodeSampler(data, ways=5, shots=1, queries=2).episode(3).query_x.shape == (10, 3, 32, 32)
    assert open_split("fc100", "train", root=root).num_classes == 60
    assert {(r.dataset, r.error) for r in list_caches(root)} == {("fc100", None), ("cifar-fs", None)}
