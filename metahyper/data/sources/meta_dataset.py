"""Meta-Dataset's own class splits and dataset specifications (Triantafillou et al., ICLR 2020),
shipped unchanged under ``splits/meta-dataset/`` (Apache-2.0, its ``LICENSE`` beside them):

* ``splits/<source>_splits.json``: ``{"train": [...], "valid": [...], "test": [...]}`` class names;
* ``dataset_specs/<source>_dataset_spec.json``: ``class_names`` (``{index: name}``) and
  ``images_per_class`` (``{index: count}``) of every class the source's conversion wrote.

``source`` is Meta-Dataset's name of a source (``quickdraw``, ``fungi``, ``mscoco``, ...). A builder
checks the classes and per-class image counts it is about to write with :func:`check_spec_counts`.
"""

from __future__ import annotations

from metahyper.data.layouts import read_split_file
from metahyper.errors import UserError

MD_SPLITS = ("train", "valid", "test")  # Meta-Dataset's split names, in its class order
FIX = "reinstall metahyper or restore datasets/splits/meta-dataset/ from git"


def md_splits(source: str) -> dict[str, list[str]]:
    """Meta-Dataset's ``train`` / ``valid`` / ``test`` class names of ``source`` (an empty list for a
    split the source has no class in); a one-line :class:`UserError` when the file is malformed."""
    data = read_split_file(f"meta-dataset/splits/{source}_splits.json")
    if not isinstance(data, dict) or any(not isinstance(data.get(s, []), list) for s in MD_SPLITS):
        raise UserError(f"Meta-Dataset split file of {source} is not {{train|valid|test: [class, ...]}}; {FIX}")
    return {s: [str(c) for c in data.get(s, [])] for s in MD_SPLITS}


def spec_counts(source: str) -> dict[str, int]:
    """``{class name: images}`` of ``source`` as Meta-Dataset's dataset specification records them."""
    spec = read_split_file(f"meta-dataset/dataset_specs/{source}_dataset_spec.json")
    names = spec.get("class_names") if isinstance(spec, dict) else None
    counts = spec.get("images_per_class") if isinstance(spec, dict) else None
    if not isinstance(names, dict) or not isinstance(counts, dict) or set(names) != set(counts):
        raise UserError(f"Meta-Dataset specification of {source} lacks class_names / images_per_class; {FIX}")
    return {str(names[i]): int(counts[i]) for i in sorted(names, key=int)}


def check_spec_counts(dataset: str, source: str, counts: dict[str, int]) -> None:
    """``counts`` (``{class name: images}`` of a cache of ``dataset`` built from Meta-Dataset source
    ``source``) must hold exactly the specification's classes with its image counts; otherwise one
    line naming the first class that differs (missing, unexpected, or with another count)."""
    expected = spec_counts(source)
    fix = f"the {source} source is incomplete or not Meta-Dataset's release; rebuild {dataset} from the full download"
    for name, count in expected.items():
        if name not in counts:
            raise UserError(f"{dataset}: class {name!r} of Meta-Dataset's {source} specification is missing; {fix}")
        if counts[name] != count:
            raise UserError(
                f"{dataset}: class {name!r} has {counts[name]} images where Meta-Dataset's {source} specification "
                f"has {count}; {fix}"
            )
    extra = [name for name in counts if name not in expected]
    if extra:
        raise UserError(f"{dataset}: class {extra[0]!r} is not in Meta-Dataset's {source} specification; {fix}")
