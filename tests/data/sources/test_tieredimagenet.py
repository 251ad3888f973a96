"""tieredImageNet builder on tiny sources in the release's format (Python 2 style pickles of PNG bytes)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from metahyper.data import EpisodeSampler, open_split, prepare
from metahyper.data.sources.tieredimagenet import shipped_classes
from metahyper.errors import UserError

PER_CLASS = {"train": 3, "val": 2, "test": 2}


def _png(image: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), np.uint8).reshape(-1, 1).copy()  # cv2.imencode's (N, 1)


def make_tiered(folder, seed: int = 0, classes: dict | None = None) -> dict:
    """``{split}_images_png.pkl`` + ``{split}_labels.pkl`` as Ren et al. wrote them (protocol 2,
    images interleaved across classes); returns {split: (class names, {name: images})}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "val", "test"):
        if classes and split in classes:
            pairs = classes[split]
        else:
            rows = list(shipped_classes(split).items())
            pairs = dict(rows[-3:] if split != "test" else rows[20:23])  # spans two categories
        names = list(pairs)
        general_names = sorted(set(pairs.values()))
        n = PER_CLASS[split]
        specific = np.tile(np.arange(len(names)), n)
        images = rng.integers(0, 256, (len(specific), 84, 84, 3), dtype=np.uint8)
        labels = {
            "label_specific": specific,
            "label_general": np.array([general_names.index(pairs[names[c]]) for c in specific]),
            "label_specific_str": names,
            "label_general_str": general_names,
        }
        (folder / f"{split}_labels.pkl").write_bytes(pickle.dumps(labels, protocol=2))
        (folder / f"{split}_images_png.pkl").write_bytes(pickle.dumps([_png(im) for im in images], protocol=2))
        written[split] = (names, {name: images[specific == c] for c, name in enumerate(names)})
    return written


def _check(root, written) -> None:
    for split, (names, images) in written.items():
        data = open_split("tieredimagenet", split, root=root)
        assert data.classes == names and data.image_size == (84, 84)
        assert json.loads((root / "tieredimagenet" / f"{split}_labels.json").read_text()) == names
        for c, name in enumerate(names):
            assert data.images_per_class(c) == PER_CLASS[split]
            np.testing.assert_array_equal(data.read(c, [1, 0]), images[name][[1, 0]])


def test_folder_decoded_in_chunks(tmp_path):
    written = make_tiered(tmp_path / "tiered-imagenet")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="3 classes instead of 351"):
        prepare("tieredimagenet", root=root, source=tmp_path)
    prepare("tieredimagenet", root=root, source=tmp_path, strict=False, chunk=2)
    _check(root, written)
    data = open_split("tieredimagenet", "train", root=root)
    assert data.storage == "rgb"
    episode = EpisodeSampler(data, ways=2, shots=1, queries=2, seed=0).episode(0)
    assert episode.support_x.shape == (2, 3, 84, 84) and episode.query_x.shape == (4, 3, 84, 84)


def test_tar_encoded_is_torchmeta_storage(tmp_path):
    """--encoded keeps the release's PNG bytes (torchmeta's cache); reads give the same pixels."""
    written = make_tiered(tmp_path / "tiered-imagenet")
    with tarfile.open(tmp_path / "tiered-imagenet.tar", "w") as tar:
        tar.add(tmp_path / "tiered-imagenet", arcname="tiered-imagenet")
    root = tmp_path / "data"
    prepare("tieredimagenet", root=root, source=tmp_path / "tiered-imagenet.tar", strict=False, encoded=True)
    _check(root, written)
    data = open_split("tieredimagenet", "val", root=root, in_memory=True)
    assert data.storage == "encoded"
    np.testing.assert_array_equal(data.read(2, [1]), written["val"][1][written["val"][0][2]][[1]])


def test_corrupt_png_leaves_cache_untouched(tmp_path):
    written = make_tiered(tmp_path / "src")
    root = tmp_path / "data"
    prepare("tieredimagenet", root=root, source=tmp_path / "src", strict=False)
    before = (root / "tieredimagenet" / "test_data.hdf5").read_bytes()
    images = pickle.loads((tmp_path / "src" / "test_images_png.pkl").read_bytes())
    images[4] = images[4][:40]  # a truncated PNG
    (tmp_path / "src" / "test_images_png.pkl").write_bytes(pickle.dumps(images, protocol=2))
    with pytest.raises(UserError, match=r"image 4 \(class n07932039\) cannot be decoded") as err:
        prepare("tieredimagenet", root=root, source=tmp_path / "src", strict=False, force=True)
    assert "\n" not in str(err.value)
    assert (root / "tieredimagenet" / "test_data.hdf5").read_bytes() == before
    assert not list((root / "tieredimagenet").glob(".*.tmp"))
    _check(root, written)


def test_bad_labels_and_members(tmp_path):
    src = tmp_path / "src"
    train = dict(list(shipped_classes("train").items())[:2])
    make_tiered(src, classes={"train": {**train, list(shipped_classes("val"))[0]: "n02098550"}})
    with pytest.raises(UserError, match="1 classes not in Ren et al.'s train split"):
        prepare("tieredimagenet", root=tmp_path / "data", source=src, strict=False)
    make_tiered(src)
    labels = pickle.loads((src / "val_labels.pkl").read_bytes())
    labels["label_specific_str"][1] = labels["label_specific_str"][0]
    (src / "val_labels.pkl").write_bytes(pickle.dumps(labels, protocol=2))
    with pytest.raises(UserError, match="class names collide"):
        prepare("tieredimagenet", root=tmp_path / "data", source=src, strict=False)
    make_tiered(src)
    images = pickle.loads((src / "train_images_png.pkl").read_bytes())
    (src / "train_images_png.pkl").write_bytes(pickle.dumps(images[:-1], protocol=2))
    with pytest.raises(UserError, match="holds 8 images but train_labels.pkl labels 9"):
        prepare("tieredimagenet", root=tmp_path / "data", source=src, strict=False)
    (src / "test_labels.pkl").unlink()
    with pytest.raises(UserError, match="has no test_labels.pkl"):
        prepare("tieredimagenet", root=tmp_path / "data", source=src, strict=False)
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_member_twice_in_tar(tmp_path):
    make_tiered(tmp_path / "tiered-imagenet")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(tmp_path / "tiered-imagenet", arcname="tiered-imagenet")
        tar.add(tmp_path / "tiered-imagenet" / "val_labels.pkl", arcname="val_labels.pkl")
    with pytest.raises(UserError, match="holds val_labels.pkl more than once"):
        prepare("tieredimagenet", root=tmp_path / "data", source=tmp_path / "t.tar", strict=False)


def test_truncated_tar(tmp_path):
    make_tiered(tmp_path / "tiered-imagenet")
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        tar.add(tmp_path / "tiered-imagenet", arcname="tiered-imagenet")
    blob = (tmp_path / "t.tar").read_bytes()
    (tmp_path / "t.tar").write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(UserError) as err:
        prepare("tieredimagenet", root=tmp_path / "data", source=tmp_path / "t.tar", strict=False)
    assert "\n" not in str(err.value) and "t.tar" in str(err.value)
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]


def test_streamed_pickle_batches_and_refusals():
    from metahyper.data.sources.common import stream_pickled_list

    arrays = [np.full((50 + i, 1), i % 256, np.uint8) for i in range(2500)]
    batches: list[int] = []
    got: list[int] = []

    def sink(items: list) -> None:
        batches.append(len(items))
        got.extend(int(a[0, 0]) for a in items)

    assert stream_pickled_list(io.BytesIO(pickle.dumps(arrays, protocol=2)), "x", sink) == 2500
    assert batches == [1000, 1000, 500] and got == [i % 256 for i in range(2500)]
    shared = np.zeros(300, np.uint8)
    with pytest.raises(UserError, match="refers back to a streamed item"):
        stream_pickled_list(io.BytesIO(pickle.dumps([shared, shared], protocol=2)), "x", lambda items: None)
    with pytest.raises(UserError, match="refusing to load posix.system|refusing to load os.system"):
        stream_pickled_list(io.BytesIO(b"\x80\x02]q\x00cos\nsystem\nq\x01a."), "evil", lambda items: None)
    with pytest.raises(UserError, match="holds a dict, not a list"):
        stream_pickled_list(io.BytesIO(pickle.dumps({"a": 1}, protocol=2)), "d", lambda items: None)
