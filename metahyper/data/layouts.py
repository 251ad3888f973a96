"""Where each dataset lives under the cache root: its :class:`Layout`, the cache root itself and
the shipped split files.

Layouts (see ``docs/datasets.md``, "Where caches live"):

* per-split layout, used by ``miniimagenet``, ``tieredimagenet``, ``cub`` (torchmeta's),
  ``cifar10``/``cifar100`` (standard train/test sets) and ``glyphs-a``/``glyphs-b``::

      <root>/<folder>/<split>_data.hdf5     one dataset per class at datasets/<class>
      <root>/<folder>/<split>_labels.json   list of class names (torchmeta: sorted wnids)

  User datasets (``metahyper prepare folder``) use it too, in ``<root>/<name>/`` beside a
  ``manifest.json`` that registers the name (:mod:`metahyper.data.manifest`).

* torchmeta's CIFAR-100 layout, used by ``fc100`` and ``cifar-fs``::

      <root>/cifar100/data.hdf5                 datasets <coarse_name>/<fine_name>, (600, 32, 32, 3) uint8
      <root>/cifar100/fine_names.json           {coarse_name: [fine_name, ...]}
      <root>/cifar100/<fc100|cifar-fs>/<split>_labels.json   [[coarse_name, fine_name], ...]

* torchmeta's Omniglot layout (Vinyals et al. split)::

      <root>/omniglot/data.hdf5                      datasets images_<background|evaluation>/<alphabet>/<character>
      <root>/omniglot/vinyals_<split>_labels.json    [["images_background", alphabet, character], ...]

Which dataset uses which layout is declared once per dataset in :mod:`metahyper.data.registry`
(:data:`~metahyper.data.registry.LAYOUTS`, :func:`~metahyper.data.registry.layout_for`).

Public API: :data:`SPLITS`, :class:`Layout`, :func:`user_layout`, :func:`default_root`,
:func:`splits_dir`, :func:`read_split_file`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metahyper.data.manifest import Manifest
from metahyper.errors import UserError
from metahyper.io import read_json

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    """Where one named dataset lives under the cache root, and how its classes are addressed.

    Built-in layouts come from the dataset registry (:mod:`metahyper.data.registry`), which fills in
    ``prepare`` and ``normalization``; user layouts from a manifest (:func:`user_layout`)."""

    name: str
    folder: str = ""  # folder under the root; "" : the name
    splits: tuple[str, ...] = SPLITS
    prepare: str = ""  # the `metahyper prepare ...` command that (re)builds it
    labels_subfolder: str | None = None  # grouped layouts (fc100, cifar-fs, omniglot): one data.hdf5
    labels_name: str = "{split}_labels.json"
    # encoded (JPEG/PNG bytes) classes are decoded and fitted to this size (storage.fit_image)
    decode_size: int | None = None
    decode_crop: float = 1.0
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # per-channel (mean, std)
    # what a manifest declares (user datasets); a cache that differs is refused when opened
    image_size: int | None = None
    class_counts: tuple[tuple[str, int], ...] = ()  # (split, classes)

    def __post_init__(self) -> None:
        if not self.folder:
            object.__setattr__(self, "folder", self.name)

    @property
    def grouped(self) -> bool:
        return self.labels_subfolder is not None

    def data_file(self, root: Path, split: str) -> Path:
        if self.grouped:
            return root / self.folder / "data.hdf5"
        return root / self.folder / f"{split}_data.hdf5"

    def labels_file(self, root: Path, split: str) -> Path:
        if self.grouped:
            return root / self.folder / self.labels_subfolder / self.labels_name.format(split=split)
        return root / self.folder / self.labels_name.format(split=split)


def user_layout(manifest: Manifest) -> Layout:
    """The :class:`Layout` of a user dataset (per-split layout in ``<root>/<name>/``)."""
    return Layout(
        manifest.name,
        manifest.name,
        manifest.splits,
        manifest.prepare,
        normalization=(manifest.mean, manifest.std),
        image_size=manifest.image_size,
        class_counts=tuple(sorted(manifest.classes.items())),
    )


def _checkout_dir() -> Path | None:
    """The source checkout holding this package (editable install), if there is one."""
    top = Path(__file__).resolve().parents[2]
    return top if (top / "pyproject.toml").is_file() and (top / "datasets").is_dir() else None


def default_root() -> Path:
    """Cache root: ``$METAHYPER_DATA``, else ``<checkout>/datasets/data``, else ``~/.metahyper/data``."""
    env, checkout = os.environ.get("METAHYPER_DATA"), _checkout_dir()
    if env:
        return Path(env).expanduser()
    return checkout / "datasets" / "data" if checkout is not None else Path.home() / ".metahyper" / "data"


def splits_dir() -> Path:
    """Folder of the shipped split files (``datasets/splits`` of the checkout, or the installed copy)."""
    checkout = _checkout_dir()
    candidates = [checkout / "datasets" / "splits"] if checkout else []
    candidates.append(Path(__file__).resolve().parents[1] / "splits")  # metahyper/splits in a wheel
    for path in candidates:
        if path.is_dir():
            return path
    raise UserError(
        f"split files not found (looked in {', '.join(map(str, candidates))}); "
        "reinstall metahyper (`pip install -e .` from a checkout)"
    )


def read_split_file(relative: str) -> list[str] | dict:
    """A shipped split file: ``.txt`` -> list of non-empty lines, ``.json`` -> parsed JSON."""
    path = splits_dir() / relative
    if not path.is_file():
        raise UserError(f"split file {path} is missing; reinstall metahyper or restore datasets/splits/ from git")
    fix = "reinstall metahyper or restore datasets/splits/ from git"
    if path.suffix == ".json":
        return read_json(path, "split file", fix, expect=(list, dict))
    text = path.read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
