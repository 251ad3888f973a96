"""md-ilsvrc on a tiny extracted ILSVRC-2012 training set (train/<wnid>/<wnid>_<n>.JPEG)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.data.class_groups import class_groups
from metahyper.data.sources.ilsvrc import duplicates
from metahyper.data.sources.meta_dataset import md_splits, spec_counts
from metahyper.data.storage import fit_image
from metahyper.errors import UserError

# leaves of Meta-Dataset's train, valid and test subgraphs; n01443537 (goldfish) has duplicates
PICK = {"train": ["n01440764", "n01443537"], "val": ["n02085620"], "test": ["n02672831", "n02666196"]}
DUPLICATE = "n01443537_4496.JPEG"  # a Caltech-256 goldfish


def make_train(top, per_class: int = 3, seed: int = 0) -> dict[str, list]:
    """``top/train/<wnid>/`` with PICK's classes (JPEGs of varied sizes; goldfish also holds one of
    Meta-Dataset's duplicates); returns {wnid: [kept JPEG paths in sorted order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for wnid in (c for classes in PICK.values() for c in classes):
        folder = top / "train" / wnid
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (20 + 5 * k, 36 - 3 * k, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{wnid}_{10 + k}.JPEG", quality=95)
        written[wnid] = sorted(folder.iterdir())
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(top / "train" / PICK["train"][1] / DUPLICATE)
    return written


def test_splits_counts_and_duplicates_match_the_specification():
    splits, counts = md_splits("ilsvrc_2012"), spec_counts("ilsvrc_2012")
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [712, 158, 130]
    assert list(counts) == [c for s in ("train", "valid", "test") for c in splits[s]]  # class ids 0..999
    skipped = duplicates()
    assert sum(map(len, skipped.values())) == 1_281_167 - sum(counts.values()) == 403  # the release has 1,281,167
    assert 1300 - len(skipped["n01443537"]) == counts["n01443537"] == 1297


def test_build_streams_classes_and_skips_duplicates(tmp_path):
    written = make_train(tmp_path / "src")
    root = tmp_path / "data"
    with pytest.raises(
        UserError, match="md-ilsvrc: class 'n01440764' has 3 images where Meta-Dataset's ilsvrc_2012 specification"
    ):
        prepare("md-ilsvrc", root=root, source=tmp_path / "src")
    prepare("md-ilsvrc", root=root, source=tmp_path / "src", strict=False, image_size=20)
    for split, classes in PICK.items():
        data = open_split("md-ilsvrc", split, root=root)
        assert data.classes == sorted(classes) and data.image_size == (20, 20)
        for c, name in enumerate(data.classes):
            assert data.images_per_class(c) == 3  # the duplicate left out
            with Image.open(written[name][0]) as image:
                np.testing.assert_array_equal(data.read(c, [0])[0], fit_image(image, 20))
    with pytest.raises(
        UserError, match="md-ilsvrc train lacks class 'n01484850' of the train leaves.*(710 missing)"
    ) as err:
        class_groups(open_split("md-ilsvrc", "train", root=root))  # WordNet groups need every leaf
    assert "\n" not in str(err.value)


def test_refusals(tmp_path):
    (tmp_path / "tars").mkdir()
    (tmp_path / "tars" / "n01440764.tar").write_bytes(b"")
    with pytest.raises(UserError, match="holds the classes' .tar files, not their folders"):
        prepare("md-ilsvrc", root=tmp_path / "data", source=tmp_path / "tars", strict=False)
    make_train(tmp_path / "src")
    (tmp_path / "src" / "train" / "n99999999").mkdir()
    (tmp_path / "src" / "train" / "n99999999" / "x.JPEG").write_bytes(b"")
    with pytest.raises(UserError, match="class 'n99999999' is in no split of Meta-Dataset's ilsvrc_2012 split"):
        prepare("md-ilsvrc", root=tmp_path / "data", source=tmp_path / "src", strict=False)
    assert not (tmp_path / "data").exists()
