"""``metahyper datasets``: every cache under a root, opened and validated (:func:`list_caches`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metahyper.data.cache import SplitData, rebuild_hint
from metahyper.data.layouts import default_root
from metahyper.data.manifest import MANIFEST
from metahyper.data.registry import LAYOUTS, layout_for
from metahyper.data.writing import BuildCheck
from metahyper.errors import UserError


@dataclass
class CacheInfo:
    """One row of ``metahyper datasets``."""

    dataset: str
    split: str
    path: Path
    classes: int = 0
    images_per_class: str = ""
    image_size: str = ""
    error: str | None = None


def list_caches(root: str | Path | None = None, deep: bool = False) -> list[CacheInfo]:
    """Every cache found under ``root`` (ours or torchmeta's), each opened and validated from what
    its files declare (structure, sizes, build identity: :class:`SplitData`) and its last image read;
    ``deep``: also every byte, against the content hashes recorded at build time
    (:mod:`metahyper.data.writing`)."""
    root = Path(root) if root is not None else default_root()
    if root.exists() and not root.is_dir():
        raise UserError(f"cache root {root} is a file, not a folder; pass the folder that holds the caches")
    rows, check = [], BuildCheck()
    layouts = list(LAYOUTS.values())
    for path in sorted(root.glob(f"*/{MANIFEST}")) if root.is_dir() else []:
        if path.parent.name not in LAYOUTS:
            try:
                layouts.append(layout_for(path.parent.name, root))
            except UserError as err:  # a broken manifest: one row that says so
                rows.append(CacheInfo(path.parent.name, "-", path, error=str(err)))
    for layout in layouts:
        for split in layout.splits:
            found = layout.labels_file(root, split).exists() or (
                not layout.grouped and layout.data_file(root, split).exists()  # a grouped data.hdf5 is shared
            )
            if not found:
                continue
            info = CacheInfo(layout.name, split, layout.data_file(root, split))
            try:
                data = SplitData(layout, split, root)
                counts = sorted({data.images_per_class(c) for c in range(data.num_classes)})
                info.classes = data.num_classes
                info.images_per_class = "-".join(map(str, (counts[0], counts[-1]) if len(counts) > 1 else counts))
                info.image_size = "x".join(map(str, data.image_size))
                data.check_readable()
                data.close()
                if deep:
                    data.check_all()
                    data.close()
                    check(layout.name, info, rebuild_hint(layout))
            except UserError as err:
                info.error = str(err)
            rows.append(info)
    return rows
