"""Generators of tiny sources in the real public formats (byte layout and naming included)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from metahyper.data.layouts import read_split_file

FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2"
).split()
FINE_TO_COARSE = [
    4,
    1,
    14,
    8,
    0,
    6,
    7,
    7,
    18,
    3,
    3,
    14,
    9,
    18,
    7,
    11,
    3,
    9,
    7,
    11,
    6,
    11,
    5,
    10,
    7,
    6,
    13,
    15,
    3,
    15,
    0,
    11,
    1,
    10,
    12,
    14,
    16,
    9,
    11,
    5,
    5,
    19,
    8,
    8,
    15,
    13,
    14,
    17,
    18,
    10,
    16,
    4,
    17,
    4,
    2,
    0,
    17,
    4,
    18,
    17,
    10,
    3,
    2,
    12,
    12,
    16,
    12,
    1,
    9,
    19,
    2,
    10,
    0,
    1,
    16,
    12,
    9,
    13,
    15,
    13,
    16,
    19,
    2,
    4,
    6,
    19,
    5,
    5,
    8,
    19,
    18,
    1,
    2,
    15,
    6,
    0,
    17,
    8,
    14,
    13,
]


def _pickle_bytes(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def make_cifar100(path: Path, train_per_class: int = 2, test_per_class: int = 1, seed: int = 0) -> dict:
    """``cifar-100-python.tar.gz``; returns the images (N, 32, 32, 3) and labels written."""
    rng = np.random.default_rng(seed)
    written = {}
    members = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        fine = np.tile(np.arange(100), n)
        rng.shuffle(fine)
        data = rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8)
        members[split] = {
            b"filenames": [f"img_{i}.png".encode() for i in range(len(fine))],
            b"batch_label": f"{split} batch".encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": [FINE_TO_COARSE[f] for f in fine],
            b"data": data,
        }
        written[split] = (data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), fine)
    members["meta"] = {
        b"fine_label_names": [n.encode() for n in FINE],
        b"coarse_label_names": [n.encode() for n in COARSE],
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            _add(tar, f"cifar-100-python/{name}", _pickle_bytes(obj))
    return written


def make_cifar10(path: Path, train_per_class: int = 1, test_per_class: int = 1, seed: int = 0) -> dict:
    """``cifar-10-python.tar.gz`` (data_batch_1..5, test_batch, batches.meta)."""
    rng = np.random.default_rng(seed)
    names = "airplane automobile bird cat deer dog frog horse ship truck".split()
    written = {"train": [], "test": []}
    with tarfile.open(path, "w:gz") as tar:
        for name, split, n in [(f"data_batch_{i}", "train", train_per_class) for i in range(1, 6)] + [
            ("test_batch", "test", test_per_class)
        ]:
            labels = np.tile(np.arange(10), n)
            data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
            batch = {
                b"batch_label": name.encode(),
                b"labels": labels.tolist(),
                b"data": data,
                b"filenames": [b"x.png"] * len(labels),
            }
            _add(tar, f"cifar-10-batches-py/{name}", _pickle_bytes(batch))
            written[split].append((data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels))
        _add(
            tar,
            "cifar-10-batches-py/batches.meta",
            _pickle_bytes({b"label_names": [n.encode() for n in names], b"num_cases_per_batch": 10, b"num_vis": 3072}),
        )
    return written


def mini_pickle(split: str, per_class: int, rng: np.random.Generator, classes: list[str] | None = None) -> dict:
    """A ``mini-imagenet-cache-{split}.pkl`` dict: image_data (N, 84, 84, 3), class_dict wnid -> rows."""
    wnids = classes if classes is not None else read_split_file(f"miniimagenet/{split}.txt")
    images = rng.integers(0, 256, size=(len(wnids) * per_class, 84, 84, 3), dtype=np.uint8)
    order = rng.permutation(len(images))  # rows of a class are not contiguous
    class_dict = {w: order[i * per_class : (i + 1) * per_class].tolist() for i, w in enumerate(wnids)}
    return {"image_data": images, "class_dict": class_dict}


@pytest.fixture
def cifar100_tar(tmp_path: Path):
    path = tmp_path / "cifar-100-python.tar.gz"
    return path, make_cifar100(path)


def write_tagged_split(root: Path, folder: str, split: str, n_classes: int, per_class: int, size: int = 8) -> list[str]:
    """A per-split cache whose pixel (0, 0) holds (class, image index, 7): lets tests trace images."""
    from metahyper.data.writing import write_split

    names = [f"n{c:08d}" for c in range(n_classes)]
    classes = {}
    for c, name in enumerate(names):
        arr = np.zeros((per_class, size, size, 3), dtype=np.uint8)
        arr[:, 0, 0, 0] = c
        arr[:, 0, 0, 1] = np.arange(per_class)
        arr[:, 0, 0, 2] = 7
        classes[name] = arr
    write_split(root, folder, split, classes, names)
    return names


@pytest.fixture
def tagged_root(tmp_path: Path) -> Path:
    """miniimagenet-layout caches: train 12 classes x 30 images, val 5 x 30, test 6 x (varying) 8x8."""
    root = tmp_path / "data"
    write_tagged_split(root, "miniimagenet", "train", 12, 30)
    write_tagged_split(root, "miniimagenet", "val", 5, 30)
    write_tagged_split(root, "miniimagenet", "test", 6, 30)
    return root
