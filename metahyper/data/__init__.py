"""Datasets: HDF5 caches in torchmeta's layout, episode sampler, classification view.

Public API::

    default_root() -> Path                      # $METAHYPER_DATA, <checkout>/datasets/data, ~/.metahyper/data
    open_split(name, split, root=None, in_memory=False) -> SplitData
        # name: fc100 miniimagenet cifar100 cifar10 glyphs-a glyphs-b (cifar-fs: torchmeta's, read-only),
        # or a user dataset built by prepare("folder", source=DIR, name=NAME) (its manifest.json)
    SplitData: .name .split .classes .num_classes .images_per_class(c) .image_size (H, W)
               .read(c, indices) -> uint8 (n, H, W, 3)  .read_many(classes, indices)  .load_into_memory()
    EpisodeSampler(data, ways, shots, queries, seed=0, image_size=None, normalization=None,
                   transform=None, length=10**9); .episode(i) / [i] -> Episode
    Episode(support_x, support_y, query_x, query_y, classes); .to(device)
    meta_batches(sampler, batch_size, start=0, num_batches=None, num_workers=0, pin_memory=False,
                 rank=0, world_size=1) -> DataLoader of list[Episode]
    ClassificationData(data, part="all"|"train"|"val", val_fraction=0.0, seed=0, augment=False,
                       image_size=None, normalization=None); cifar_standard(name, split, root=None)
    normalization_for(name) -> (mean, std); to_tensor(uint8 NHWC, mean, std, size) -> float NCHW
    list_caches(root=None) -> list[CacheInfo]; prepare(dataset, root=None, source=None, download=False,
                                                      force=False, **options)
"""

from __future__ import annotations

from pathlib import Path

from metahyper.data.cache import LAYOUTS, CacheInfo, SplitData, default_root, known_datasets, layout_for, list_caches, open_split
from metahyper.data.classification import ClassificationData, cifar_standard
from metahyper.data.episodes import Episode, EpisodeSampler, episode_rng, meta_batches
from metahyper.data.transforms import normalization_for, random_crop_flip, resize, to_tensor
from metahyper.errors import UserError

PREPARABLE = ("fc100", "cifar10", "cifar100", "miniimagenet", "glyphs", "folder")


def prepare(
    dataset: str,
    root: str | Path | None = None,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    **options,
) -> list[Path]:
    """Build the cache of ``dataset`` (``metahyper prepare``); returns the files written."""
    from metahyper.data.sources import cifar, folder, glyphs, miniimagenet

    root = Path(root).expanduser() if root is not None else default_root()
    if download and source is not None:
        raise UserError("pass either --download or --source, not both")
    if dataset == "fc100":
        return cifar.build_fc100(root, source, download, force, **options)
    if dataset in ("cifar10", "cifar100"):
        return cifar.build_cifar_standard(dataset, root, source, download, force, **options)
    if dataset == "miniimagenet":
        if download or source is None:
            raise UserError(
                "MiniImageNet cannot be downloaded automatically; pass --source with mini-imagenet.tar.gz, "
                "the mini-imagenet-cache-*.pkl folder, or an image folder with the Ravi & Larochelle CSVs"
            )
        return miniimagenet.build_miniimagenet(root, source, force, **options)
    if dataset == "glyphs":
        if download or source is not None:
            raise UserError("glyphs is rendered from matplotlib's fonts; it takes no --source or --download")
        return glyphs.build_glyphs(root, force=force, **options)
    if dataset == "folder":
        if download or source is None:
            raise UserError("prepare folder needs --source DIR, a folder with one subfolder of images per class")
        return folder.build_folder(root, source, force, **options)
    raise UserError(f"unknown dataset {dataset!r} to prepare; use one of {', '.join(PREPARABLE)}")


__all__ = [
    "LAYOUTS", "PREPARABLE", "CacheInfo", "ClassificationData", "Episode", "EpisodeSampler", "SplitData",
    "cifar_standard", "default_root", "episode_rng", "known_datasets", "layout_for", "list_caches", "meta_batches", "normalization_for",
    "open_split", "prepare", "random_crop_flip", "resize", "to_tensor",
]
