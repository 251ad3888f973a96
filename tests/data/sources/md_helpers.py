"""A stand-in for the shipped Meta-Dataset files, so that a builder's strict mode (every class of
the split file, the specification's counts) runs on a tiny generated source."""

from __future__ import annotations

import json
from pathlib import Path

from metahyper.data import layouts


def fake_meta_dataset(monkeypatch, folder: Path, source: str, splits: dict[str, list[str]], counts: dict[str, int]):
    """Shipped split files read from ``folder``, holding ``source``'s ``splits`` (``train`` /
    ``valid`` / ``test``) and a specification of ``counts`` in Meta-Dataset's format (indices in
    split order)."""
    md = folder / "meta-dataset"
    (md / "splits").mkdir(parents=True)
    (md / "dataset_specs").mkdir()
    (md / "splits" / f"{source}_splits.json").write_text(json.dumps(splits))
    order = [c for s in ("train", "valid", "test") for c in splits.get(s, [])]
    spec = {
        "name": source,
        "classes_per_split": {s.upper(): len(splits.get(s, [])) for s in ("train", "valid", "test")},
        "images_per_class": {str(i): counts[c] for i, c in enumerate(order)},
        "class_names": {str(i): c for i, c in enumerate(order)},
        "__class__": "DatasetSpecification",
    }
    (md / "dataset_specs" / f"{source}_dataset_spec.json").write_text(json.dumps(spec))
    monkeypatch.setattr(layouts, "splits_dir", lambda: folder)
