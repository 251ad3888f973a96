"""Classification view: all images, labels 0..C-1, seeded disjoint held-out part, augmentation."""

from __future__ import annotations

import torch

from metahyper.data import ClassificationData, open_split


def test_parts_disjoint_and_seeded(tagged_root):
    data = open_split("miniimagenet", "train", root=tagged_root, in_memory=True)
    full = ClassificationData(data)
    assert len(full) == 12 * 30 and full.num_classes == 12 and set(full.labels.tolist()) == set(range(12))
    train = ClassificationData(data, part="train", val_fraction=0.2, seed=3)
    val = ClassificationData(data, part="val", val_fraction=0.2, seed=3)
    assert len(val) == 12 * 6 and len(train) == 12 * 24

    def pairs(d: ClassificationData) -> set:
        return set(zip(d.labels.tolist(), d.indices.tolist()))

    assert not pairs(train) & pairs(val) and pairs(train) | pairs(val) == pairs(full)
    assert pairs(ClassificationData(data, part="val", val_fraction=0.2, seed=3)) == pairs(val)
    assert pairs(ClassificationData(data, part="val", val_fraction=0.2, seed=4)) != pairs(val)
    x, y = val[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == int(val.labels[0])
    aug = ClassificationData(data, augment=True, image_size=16)
    xs, _ = aug[5]
    assert xs.shape == (3, 16, 16)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    xb, yb = next(iter(loader))
    assert xb.shape == (32, 3, 8, 8) and yb.dtype == torch.int64


def test_augmentation_is_seeded_by_seed_epoch_and_index(tagged_root):
    data = open_split("miniimagenet", "train", root=tagged_root, in_memory=True)
    a = ClassificationData(data, augment=True, seed=1)
    b = ClassificationData(data, augment=True, seed=1)
    draws = lambda d: torch.stack([d[i][0] for i in range(40)])  # noqa: E731
    first = draws(a)
    assert torch.equal(first, draws(b))
    a.set_epoch(1)
    assert not torch.equal(first, draws(a))
    assert not torch.equal(first, draws(ClassificationData(data, augment=True, seed=2)))
