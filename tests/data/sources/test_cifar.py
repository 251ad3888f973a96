"""FC100 and CIFAR-10/100 builders on tiny archives in the real CIFAR python format."""

from __future__ import annotations

import json
import os
import tarfile

import numpy as np
import pytest

from metahyper.data import open_split, prepare
from metahyper.errors import UserError
from tests.data.conftest import COARSE, FINE, FINE_TO_COARSE, make_cifar10

FC100 = {"train": [1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19], "val": [8, 11, 13, 16], "test": [0, 7, 12, 14]}


def test_fc100_split_pixels_layout(tmp_path, cifar100_tar):
    src, written = cifar100_tar
    root = tmp_path / "data"
    prepare("fc100", root=root, source=src, strict=False)
    fine_names = json.loads((root / "cifar100" / "fine_names.json").read_text())
    assert list(fine_names) == COARSE and sum(map(len, fine_names.values())) == 100
    for split, coarse_idx in FC100.items():
        data = open_split("fc100", split, root=root)
        assert data.num_classes == 5 * len(coarse_idx)
        expected = {f"{COARSE[c]}/{FINE[f]}" for f in range(100) for c in [FINE_TO_COARSE[f]] if c in coarse_idx}
        assert set(data.classes) == expected
        labels = json.loads((root / "cifar100" / "fc100" / f"{split}_labels.json").read_text())
        assert all(isinstance(x, list) and len(x) == 2 for x in labels)
    data = open_split("fc100", "test", root=root)
    c = data.classes.index("aquatic_mammals/beaver")
    fine = FINE.index("beaver")
    merged = np.concatenate(
        [written["train"][0][written["train"][1] == fine], written["test"][0][written["test"][1] == fine]]
    )
    assert data.images_per_class(c) == 3 and data.image_size == (32, 32)
    np.testing.assert_array_equal(data.read(c, [0, 1, 2]), merged)  # train then test, pixels preserved


def test_fc100_strict_says_what_differs_and_keeps_cache(tmp_path, cifar100_tar):
    src, _ = cifar100_tar
    root = tmp_path / "data"
    with pytest.raises(UserError, match=r"3 images instead of 600"):
        prepare("fc100", root=root, source=src)
    assert not (root / "cifar100").exists()
    prepare("fc100", root=root, source=src, strict=False)
    before = (root / "cifar100" / "data.hdf5").stat().st_mtime_ns
    with pytest.raises(UserError, match="already exists.*--force"):
        prepare("fc100", root=root, source=src, strict=False)
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz"):
        pass
    with pytest.raises(UserError, match="no member cifar-100-python/meta"):
        prepare("fc100", root=root, source=bad, force=True, strict=False)
    assert (root / "cifar100" / "data.hdf5").stat().st_mtime_ns == before
    assert open_split("fc100", "train", root=root).num_classes == 60


def test_cifar100_standard_from_extracted_folder(tmp_path, cifar100_tar):
    src, written = cifar100_tar
    with tarfile.open(src) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    root = tmp_path / "data"
    prepare("cifar100", root=root, source=tmp_path / "extracted", strict=False)
    train, test = open_split("cifar100", "train", root=root), open_split("cifar100", "test", root=root)
    assert train.classes == FINE and test.num_classes == 100
    assert train.images_per_class(0) == 2 and test.images_per_class(99) == 1
    imgs, labels = written["test"]
    np.testing.assert_array_equal(test.read(42, [0]), imgs[labels == 42])


def test_cifar10_standard(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    written = make_cifar10(src)
    root = tmp_path / "data"
    prepare("cifar10", root=root, source=src, strict=False)
    train = open_split("cifar10", "train", root=root)
    assert train.classes[:2] == ["airplane", "automobile"] and train.images_per_class(3) == 5
    expected = np.concatenate([images[labels == 3] for images, labels in written["train"]])
    np.testing.assert_array_equal(train.read(3, range(5)), expected)
    with pytest.raises(UserError, match="no split 'val'"):
        open_split("cifar10", "val", root=root)


def test_malicious_pickle_refused(tmp_path):
    import io
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    src = tmp_path / "cifar-100-python.tar.gz"
    payload = pickle.dumps(Evil())
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/meta")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(UserError, match="refusing to load"):
        prepare("fc100", root=tmp_path / "data", source=src, strict=False)


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("METAHYPER_NETWORK_TESTS") != "1", reason="set METAHYPER_NETWORK_TESTS=1")
def test_download_fc100(tmp_path):
    prepare("fc100", root=tmp_path, download=True)
    assert open_split("fc100", "train", root=tmp_path).num_classes == 60
