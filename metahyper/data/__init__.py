"""Datasets: HDF5 caches in torchmeta's layout, episode sampler, classification view.

Public API::

    default_root() -> Path                      # $METAHYPER_DATA, <checkout>/datasets/data, ~/.metahyper/data
    open_split(name, split, root=None, in_memory=False) -> SplitData
        # name: any key of LAYOUTS (fc100 cifar-fs miniimagenet tieredimagenet cub omniglot cifar10 ...),
        # or a user dataset built by prepare("folder", source=DIR, name=NAME) (its manifest.json)
    SplitData: .name .split .classes .num_classes .images_per_class(c) .image_size (H, W)
               .read(c, indices) -> uint8 (n, H, W, 3)  .read_many(classes, indices)  .load_into_memory()
    load_splits(splits, mode="auto"|"yes"|"no", processes=1) -> bool   # into memory, or read in place
    EpisodeSampler(data, ways, shots, queries, seed=0, image_size=None, normalization=None,
                   transform=None, length=10**9); .episode(i) / [i] -> Episode
    Episode(support_x, support_y, query_x, query_y, classes); .to(device)
    meta_batches(sampler, batch_size, start=0, num_batches=None, num_workers=0, pin_memory=False,
                 rank=0, world_size=1) -> DataLoader of list[Episode]
    ClassificationData(data, part="all"|"train"|"val", val_fraction=0.0, seed=0, augment=False,
                       image_size=None, normalization=None); cifar_standard(name, split, root=None)
    normalization_for(name) -> (mean, std); to_tensor(uint8 NHWC, mean, std, size) -> float NCHW
    list_caches(root=None) -> list[CacheInfo]; prepare(dataset, root=None, source=None, download=False,
                                                      force=False, **options)   # one DATASETS entry each
    DATASETS: {name: DatasetSpec}; register(DatasetSpec(...))   # metahyper.data.registry: how to add one
"""

from __future__ import annotations

from metahyper.data.cache import IN_MEMORY, SplitData, load_splits, open_split
from metahyper.data.classification import ClassificationData, cifar_standard
from metahyper.data.episodes import Episode, EpisodeSampler, episode_rng, meta_batches
from metahyper.data.layouts import default_root
from metahyper.data.listing import CacheInfo, list_caches
from metahyper.data.registry import (
    DATASETS,
    LAYOUTS,
    DatasetSpec,
    known_datasets,
    layout_for,
    normalization_for,
    prepare,
    register,
)
from metahyper.data.transforms import random_crop_flip, resize, to_tensor

__all__ = [
    "DATASETS",
    "IN_MEMORY",
    "LAYOUTS",
    "CacheInfo",
    "ClassificationData",
    "DatasetSpec",
    "Episode",
    "EpisodeSampler",
    "SplitData",
    "cifar_standard",
    "default_root",
    "episode_rng",
    "known_datasets",
    "layout_for",
    "list_caches",
    "load_splits",
    "meta_batches",
    "normalization_for",
    "open_split",
    "prepare",
    "random_crop_flip",
    "register",
    "resize",
    "to_tensor",
]
