"""Class groups behind Meta-Dataset's variable-way episodes (Triantafillou et al. 2020, section 3.2).

Two sources do not draw an episode's classes uniformly from the whole split:

* **ILSVRC-2012** (``kind="dag"``): each split is a subgraph of WordNet
  (``meta-dataset/dataset_specs/ilsvrc_2012_dataset_spec.json``, ``split_subgraphs``). An episode
  takes the leaves spanned by one node of it, a node drawn uniformly from those spanning between
  ``min_ways`` and :data:`MAX_SPANNING_LEAVES` (392) leaves, down to ``max_ways`` of them.
* **Omniglot** (``kind="superclass"``): an episode first picks an alphabet uniformly, then its
  ways and characters within that alphabet. The alphabet of each character comes from
  ``omniglot_dataset_spec.json`` (``class_names`` ``<alphabet>-<character>``, in alphabet order,
  ``classes_per_superclass`` of each).

:func:`class_groups` gives a split's :class:`ClassGroups` by the dataset's entry in
:data:`GROUPS_OF_DATASET` (None for a dataset whose classes are drawn uniformly). Classes are
matched by name: an ILSVRC class is named by its WordNet id (its last ``/`` part), an Omniglot class
``images_<part>/<alphabet>/<character>`` as metahyper's omniglot builder names it (a rotated copy,
``<character>_rot90``, belongs to its character's alphabet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metahyper.data.cache import SplitData
from metahyper.data.layouts import read_split_file
from metahyper.errors import UserError

MAX_SPANNING_LEAVES = 392  # Meta-Dataset's MAX_SPANNING_LEAVES_ELIGIBLE
ILSVRC_SPEC = "meta-dataset/dataset_specs/ilsvrc_2012_dataset_spec.json"
OMNIGLOT_SPEC = "meta-dataset/dataset_specs/omniglot_dataset_spec.json"
SPEC_SPLITS = {"train": "TRAIN", "val": "VALID", "valid": "VALID", "test": "TEST"}
_ROTATION = re.compile(r"_rot\d+$")


@dataclass(frozen=True)
class ClassGroups:
    """Groups of a split's class indices. ``kind``: ``"dag"`` (an episode takes one group's classes)
    or ``"superclass"`` (an episode draws its ways and classes within one group)."""

    kind: str
    groups: tuple[np.ndarray, ...]

    def eligible(self, min_ways: int) -> tuple[np.ndarray, ...]:
        """The groups an episode may draw from: at least ``min_ways`` classes (and, for ``dag``, at
        most :data:`MAX_SPANNING_LEAVES`)."""
        most = MAX_SPANNING_LEAVES if self.kind == "dag" else None
        return tuple(g for g in self.groups if len(g) >= min_ways and (most is None or len(g) <= most))


def _spec_split(data: SplitData) -> str:
    if data.split not in SPEC_SPLITS:
        raise UserError(
            f"{data.name} has a split {data.split!r} that Meta-Dataset does not define; use train, val or test"
        )
    return SPEC_SPLITS[data.split]


def _index_by_name(data: SplitData, names: list[str], wanted: set[str], what: str) -> dict[str, int]:
    """``{name: class index}``; a one-line :class:`UserError` naming the first class of the split
    that ``wanted`` lacks, or the first of ``wanted`` that the split lacks."""
    fix = f"rebuild {data.name} with Meta-Dataset's class split"
    stray = next((c for c, n in zip(data.classes, names) if n not in wanted), None)
    if stray is not None:
        raise UserError(f"{data.name} {data.split}: class {stray!r} is not in {what}; {fix}")
    missing = sorted(wanted - set(names))
    if missing:
        raise UserError(
            f"{data.name} {data.split} lacks class {missing[0]!r} of {what} ({len(missing)} missing); {fix}"
        )
    return {n: i for i, n in enumerate(names)}


def ilsvrc_groups(data: SplitData) -> ClassGroups:
    """For each node of the split's WordNet subgraph, the classes of the leaves it spans (``dag``).
    The split's classes must be exactly the subgraph's leaves."""
    graph = read_split_file(ILSVRC_SPEC)["split_subgraphs"][_spec_split(data)]
    children = {node["wn_id"]: node["children_ids"] for node in graph}
    leaves = {n for n, kids in children.items() if not kids}
    names = [c.rsplit("/", 1)[-1] for c in data.classes]
    index = _index_by_name(data, names, leaves, f"the {data.split} leaves of Meta-Dataset's ILSVRC subgraph")
    spans: dict[str, frozenset[str]] = {}

    def span(node: str) -> frozenset[str]:
        if node not in spans:
            kids = children[node]
            spans[node] = frozenset({node}) if not kids else frozenset().union(*(span(k) for k in kids))
        return spans[node]

    for node in children:
        span(node)
    groups = (np.array(sorted(index[leaf] for leaf in spans[n]), dtype=np.int64) for n in sorted(children))
    return ClassGroups("dag", tuple(groups))


def omniglot_groups(data: SplitData) -> ClassGroups:
    """The split's characters grouped by alphabet (``superclass``), alphabets in the spec's order."""
    spec = read_split_file(OMNIGLOT_SPEC)
    alphabet_of, first = {}, 0
    for k in sorted(spec["classes_per_superclass"], key=int):
        count = spec["classes_per_superclass"][k]
        for c in range(first, first + count):
            alphabet_of[spec["class_names"][str(c)]] = int(k)
        first += count
    names = []
    for c in data.classes:
        parts = c.split("/")
        names.append(f"{parts[-2]}-{_ROTATION.sub('', parts[-1])}" if len(parts) >= 2 else c)
    unknown = next((c for c, n in zip(data.classes, names) if n not in alphabet_of), None)
    if unknown is not None:
        raise UserError(
            f"{data.name} {data.split}: class {unknown!r} is no character of Meta-Dataset's Omniglot spec; "
            f"rebuild it with `metahyper prepare {data.name} --force`"
        )
    alphabets = np.array([alphabet_of[n] for n in names])
    return ClassGroups("superclass", tuple(np.flatnonzero(alphabets == a) for a in np.unique(alphabets)))


# dataset name -> how its split's classes are grouped; builders of other Meta-Dataset sources add theirs
GROUPS_OF_DATASET: dict[str, Callable[[SplitData], ClassGroups]] = {
    "omniglot": omniglot_groups,
    "md-omniglot": omniglot_groups,
    "md-ilsvrc": ilsvrc_groups,
}


def class_groups(data: SplitData) -> ClassGroups | None:
    """The :class:`ClassGroups` of ``data`` (its dataset's entry in :data:`GROUPS_OF_DATASET`), or
    None: classes drawn uniformly from the whole split."""
    make = GROUPS_OF_DATASET.get(data.name)
    return make(data) if make is not None else None
