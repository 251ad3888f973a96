"""Meta-Dataset's shipped split and specification files, and the check of a cache's counts against them."""

from __future__ import annotations

import json

import pytest

from metahyper.data.layouts import splits_dir
from metahyper.data.sources.meta_dataset import check_spec_counts, md_splits, spec_counts
from metahyper.errors import UserError

# Meta-Dataset's published class splits (train, valid, test) of the sources built here
SIZES = {"aircraft": (70, 15, 15), "dtd": (33, 7, 7), "vgg_flower": (71, 15, 16), "traffic_sign": (0, 0, 43)}
IMAGES = {"aircraft": 10000, "dtd": 5640, "vgg_flower": 8189, "traffic_sign": 39209}


@pytest.mark.parametrize("source", sorted(SIZES))
def test_splits_and_specification_agree(source):
    splits, counts = md_splits(source), spec_counts(source)
    assert tuple(len(splits[s]) for s in ("train", "valid", "test")) == SIZES[source]
    names = [c for s in ("train", "valid", "test") for c in splits[s]]
    assert names == list(counts)  # class ids follow the split file's order, train first
    assert sum(counts.values()) == IMAGES[source]
    check_spec_counts(f"md-{source}", source, dict(counts))


def test_every_source_file_is_shipped_with_its_license():
    folder = splits_dir() / "meta-dataset"
    assert "Apache License" in (folder / "LICENSE").read_text()
    sources = {p.name.removesuffix("_splits.json") for p in (folder / "splits").glob("*_splits.json")}
    assert len(sources) == 8 and sources <= {p.name.removesuffix("_dataset_spec.json") for p in folder.glob("*/*")}
    for source in sources:
        assert len(set(sum(md_splits(source).values(), []))) == len(spec_counts(source))


def test_a_mismatch_names_the_class():
    counts = spec_counts("dtd")
    for change, message in (
        (lambda c: c.pop("braided"), "class 'braided' of Meta-Dataset's dtd specification is missing"),
        (lambda c: c.update(woven=119), "class 'woven' has 119 images where Meta-Dataset's dtd specification has 120"),
        (lambda c: c.update(paisleyy=120), "class 'paisleyy' is not in Meta-Dataset's dtd specification"),
    ):
        changed = dict(counts)
        change(changed)
        with pytest.raises(UserError, match=message) as err:
            check_spec_counts("md-dtd", "dtd", changed)
        assert "\n" not in str(err.value) and str(err.value).startswith("md-dtd: ")


def test_a_malformed_split_file_is_one_line(tmp_path, monkeypatch):
    from metahyper.data import layouts

    (tmp_path / "meta-dataset" / "splits").mkdir(parents=True)
    (tmp_path / "meta-dataset" / "splits" / "dtd_splits.json").write_text(json.dumps({"train": "chequered"}))
    monkeypatch.setattr(layouts, "splits_dir", lambda: tmp_path)
    with pytest.raises(UserError, match=r"split file of dtd is not \{train\|valid\|test"):
        md_splits("dtd")
    with pytest.raises(UserError, match="dataset_spec.json is missing"):
        spec_counts("dtd")
