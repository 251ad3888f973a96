"""Classification view of a cached split, for pretraining (paper section 4.2) and the CIFAR tables.

``ClassificationData(data)`` is a torch Dataset of ``(x, y)``: every image of the split's classes,
``y`` in 0..C-1 (the order of ``data.classes``), ``x`` float (3, S, S) normalised. A seeded,
per-class held-out part (``val_fraction``) gives a validation set: ``part="train"`` /
``part="val"`` with the same seed are disjoint and together cover the split. ``augment=True``
applies random crop (padding 4, ``pad_mode`` reflect or zeros) and horizontal flip, drawn from
``(seed, epoch, index)`` so that the same seed gives the same augmented batches for any number of workers or ranks (call
:meth:`set_epoch` once per epoch). For CIFAR's standard train/test sets
(Tables 1-5) use :func:`cifar_standard` (``open_split("cifar100", "train" | "test")``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from metahyper.data.cache import SplitData, open_split
from metahyper.data.transforms import random_crop_flip, to_tensor
from metahyper.errors import UserError


class ClassificationData(Dataset):
    """All images of a split as ``(float (3,S,S), long label)`` pairs; optional held-out part."""

    def __init__(
        self,
        data: SplitData,
        part: str = "all",
        val_fraction: float = 0.0,
        seed: int = 0,
        augment: bool = False,
        image_size: int | None = None,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        padding: int = 4,
        pad_mode: str = "reflect",
    ) -> None:
        if part not in ("all", "train", "val"):
            raise UserError(f"unknown part {part!r}; use all, train or val")
        if not 0.0 <= val_fraction < 1.0:
            raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.data = data
        self.seed = int(seed)
        self.epoch = 0
        self.part = part
        self.augment = augment
        self.image_size = image_size
        self.padding = padding
        self.pad_mode = pad_mode
        self.normalization = normalization if normalization is not None else data.normalization
        rng = np.random.default_rng([int(seed), 0x5EED])
        labels, indices = [], []
        for c in range(data.num_classes):
            n = data.images_per_class(c)
            perm = rng.permutation(n)
            n_val = int(round(val_fraction * n))
            chosen = {"all": np.arange(n), "val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:])}[part]
            labels.append(np.full(len(chosen), c, dtype=np.int64))
            indices.append(chosen)
        self.labels = np.concatenate(labels)
        self.indices = np.concatenate(indices).astype(np.int64)

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (like ``DistributedSampler.set_epoch``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        c = int(self.labels[i])
        image = self.data.read(c, [int(self.indices[i])])
        if self.augment:
            rng = np.random.default_rng([self.seed, 0xA06, self.epoch, int(i)])
            image = random_crop_flip(image, self.padding, generator=rng, pad_mode=self.pad_mode)
        x = to_tensor(image, *self.normalization, size=self.image_size)[0]
        return x, c


def cifar_standard(
    name: str, split: str, root: str | Path | None = None, augment: bool | None = None, **kwargs
) -> ClassificationData:
    """CIFAR-10/100 standard ``train`` (augmented by default) or ``test`` set, labels = CIFAR indices."""
    if name not in ("cifar10", "cifar100"):
        raise UserError(f"{name!r} has no standard train/test view; use cifar10 or cifar100")
    data = open_split(name, split, root=root, in_memory=True)
    return ClassificationData(data, augment=(split == "train") if augment is None else augment, **kwargs)
