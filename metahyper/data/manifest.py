"""Manifests of user datasets: how a cache built by ``metahyper prepare folder`` registers its name.

A user dataset ``NAME`` lives in ``<root>/NAME/`` in the per-split layout (torchmeta's MiniImageNet
layout: ``{split}_data.hdf5`` + ``{split}_labels.json``) beside ``manifest.json``::

    {"format": "metahyper-dataset", "version": 1, "name": "NAME", "splits": ["train", "val", "test"],
     "classes": {"train": 64, ...}, "image_size": 84, "mean": [r, g, b], "std": [r, g, b],
     "statistics_of": "train", "source": "/path/given", "prepare": "metahyper prepare folder ..."}

``mean``/``std`` are the per-channel statistics (RGB, in [0, 1]) of the images of
``statistics_of`` (the train split when there is one), measured when the cache was built. The
manifest is what makes ``NAME`` a known dataset for every command (:func:`read_manifest`,
:func:`find_manifests`); a folder without one is not a dataset.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metahyper.errors import UserError
from metahyper.io import read_json

MANIFEST = "manifest.json"
FORMAT = "metahyper-dataset"
VERSION = 1
MIN_STD = 1e-3  # a smaller per-channel std blows normalised pixels up a thousandfold and more
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` records about one user dataset (see the module docstring)."""

    name: str
    splits: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    statistics_of: str
    prepare: str
    source: str = ""
    classes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            **asdict(self),
            "splits": list(self.splits),
            "mean": list(self.mean),
            "std": list(self.std),
        }


def manifest_path(root: Path, name: str) -> Path:
    return Path(root) / name / MANIFEST


def read_manifest(root: Path, name: str) -> Manifest | None:
    """The manifest of dataset ``name`` under ``root``; None when there is none; a one-line
    :class:`UserError` when it exists but is not a valid manifest of ``name``."""
    path = manifest_path(root, name)
    if not path.is_file():
        return None
    fix = f"rebuild it with `metahyper prepare folder --source DIR --name {name} --force`"
    data = read_json(path, "dataset manifest", fix, expect=dict)
    try:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(
                f"format {data.get('format')!r} version {data.get('version')!r}, expected {FORMAT!r} {VERSION}"
            )
        manifest = Manifest(
            name=str(data["name"]),
            splits=tuple(map(str, data["splits"])),
            image_size=int(data["image_size"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            statistics_of=str(data["statistics_of"]),
            prepare=str(data["prepare"]),
            source=str(data.get("source", "")),
            classes={str(k): int(v) for k, v in data.get("classes", {}).items()},
        )
        if manifest.name != name:
            raise ValueError(f"it names dataset {manifest.name!r}, not its folder's {name!r}")
        if not manifest.splits:
            raise ValueError("splits must be non-empty")
        check_statistics(manifest.mean, manifest.std)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"dataset manifest {path} is invalid ({type(err).__name__}: {err}); {fix}") from None
    return manifest


def check_statistics(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """A ``ValueError`` unless ``mean`` and ``std`` are 3 finite per-channel values of pixels in
    [0, 1]: mean in [0, 1], std in [:data:`MIN_STD`, 1]."""
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must be 3 values each, got {len(mean)} and {len(std)}")
    if not all(0 <= v <= 1 for v in mean) or not all(MIN_STD <= v <= 1 for v in std):
        raise ValueError(f"mean {list(mean)} must lie in [0, 1] and std {list(std)} in [{MIN_STD:g}, 1]")


def find_manifests(root: Path) -> dict[str, Manifest]:
    """Every user dataset under ``root`` (a folder ``NAME`` holding a manifest), by name; folders
    with a broken manifest are left out (``metahyper datasets`` reports them)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    found = {}
    for path in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            manifest = read_manifest(root, path.parent.name)
        except UserError:
            continue
        if manifest is not None:
            found[manifest.name] = manifest
    return found
