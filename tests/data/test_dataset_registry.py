"""The dataset registry: a dataset is one builder file plus one ``register(DatasetSpec(...))`` line,
and `prepare`, its options, `open_split`, `datasets` and the normalization follow from it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.data import DATASETS, LAYOUTS, known_datasets, normalization_for, open_split
from metahyper.data.registry import DatasetSpec, Option, register
from metahyper.data.sources.glyphs import build_glyphs
from metahyper.errors import UserError

# The whole of a new dataset: its builder and the one line that registers it.
TOY_SOURCE = '''
"""Toy dataset: ``classes`` flat-colour classes of 3 images per split."""

from pathlib import Path

import numpy as np

from metahyper.data.layouts import SPLITS
from metahyper.data.registry import DatasetSpec, Option, register
from metahyper.data.writing import check_writable, split_paths, write_splits


def build_toy(root: Path, force: bool = False, classes: int = 4, image_size: int = 6) -> list[Path]:
    """Write the three splits of ``toy`` under ``root``; returns the files written."""
    outputs = [path for split in SPLITS for path in split_paths(root, "toy", split)]
    check_writable(outputs, force, "toy")
    splits = {}
    for i, split in enumerate(SPLITS):
        names = [f"{split}{c}" for c in range(classes)]
        images = {n: np.full((3, image_size, image_size, 3), 20 * i + c, np.uint8) for c, n in enumerate(names)}
        splits[("toy", split)] = (images, names)
    write_splits(root, splits)
    return outputs


register(DatasetSpec("toy", build_toy, ((0.1,) * 3, (0.2,) * 3), options={"classes": Option("classes", minimum=1)}))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Imports the toy dataset's module (its ``register`` line runs); unregisters it afterwards."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "toy_dataset.py").write_text(TOY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    before = dict(DATASETS)
    importlib.import_module("toy_dataset")
    yield DATASETS["toy"]
    DATASETS.clear()
    DATASETS.update(before)
    sys.modules.pop("toy_dataset", None)


def test_a_new_dataset_is_one_file_and_one_register_line(toy, tmp_path):
    root = tmp_path / "data"
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "--help"])
    assert res.exit_code == 0 and "toy" in res.output and "--classes" in res.output
    res = runner.invoke(main, ["prepare", "toy", "--classes", "2", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"toy: wrote 6 files under {root}"
    train = open_split("toy", "train", root=root)
    assert train.classes == ["train0", "train1"] and train.image_size == (6, 6)
    assert train.read(1, [0]).max() == 1 and train.normalization == ((0.1,) * 3, (0.2,) * 3)
    assert normalization_for("toy") == ((0.1,) * 3, (0.2,) * 3) and "toy" in known_datasets(root)
    res = runner.invoke(main, ["datasets", "--root", str(root)])
    rows = [line.split() for line in res.output.splitlines() if line.startswith("toy")]
    assert res.exit_code == 0 and [r[:3] for r in rows] == [["toy", s, "2"] for s in ("train", "val", "test")]
    assert all(r[-1] == "ok" for r in rows)
    # the spec's checks apply from the command line and from Python alike
    res = runner.invoke(main, ["prepare", "toy", "--classes", "0", "--root", str(root)])
    assert res.exit_code == 2 and res.output.strip() == "Error: --classes must be >= 1, got 0"
    res = runner.invoke(main, ["prepare", "toy", "--source", str(tmp_path), "--root", str(root)])
    assert res.exit_code == 2 and "toy is built offline; it takes no --source or --download" in res.output
    res = runner.invoke(main, ["prepare", "toy", "--rotations", "--root", str(root)])
    assert res.exit_code == 2 and "--rotations does not apply to toy; it takes classes, image_size" in res.output
    res = runner.invoke(main, ["prepare", "toy", "--root", str(root)])
    assert res.exit_code == 2 and "pass --force" in res.output


def test_every_layout_comes_from_one_spec_with_its_command_and_statistics():
    owners = {layout.name: spec for spec in DATASETS.values() for layout in spec.layouts}
    assert list(LAYOUTS) == list(owners)
    assert {"fc100", "miniimagenet", "glyphs-a", "glyphs-b", "cifar10"} <= set(LAYOUTS)
    for name, layout in LAYOUTS.items():
        assert layout.normalization == owners[name].normalization is not None
        assert layout.prepare.startswith(f"metahyper prepare {owners[name].name}")
    assert LAYOUTS["miniimagenet"].prepare == "metahyper prepare miniimagenet --source PATH"
    assert LAYOUTS["fc100"].prepare == "metahyper prepare fc100 --download"
    assert LAYOUTS["glyphs-b"].prepare == "metahyper prepare glyphs"
    assert DATASETS["folder"].layouts == ()  # user datasets: registered by their manifest
    with pytest.raises(UserError, match="no normalization statistics for dataset 'folder'"):
        normalization_for("folder")


def test_option_types_come_from_the_builder_signature():
    glyphs, folder = DATASETS["glyphs"], DATASETS["folder"]
    assert glyphs.option_type("image_size") is int and glyphs.option_type("max_memory") is float
    assert folder.option_type("splits") is Path and folder.option_type("split_ratios") is str
    assert DATASETS["omniglot"].option_type("rotations") is bool
    assert "root" not in glyphs.keywords() and "force" not in glyphs.keywords() and "seed" in glyphs.keywords()


def test_register_refuses_clashes_and_undeclared_options():
    stats = ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="glyphs-a is already registered"):
        register(DatasetSpec("glyphs-a", build_glyphs, stats))
    with pytest.raises(ValueError, match=r"options \['colour'\] are not keyword parameters"):
        DatasetSpec("paint", build_glyphs, stats, options={"colour": Option("x")})
    with pytest.raises(ValueError, match="needs its normalization"):
        DatasetSpec("paint", build_glyphs)

    def build_paint(root: Path, force: bool = False, image_size: str = "big") -> list[Path]:
        return []

    with pytest.raises(ValueError, match="option image_size is of type str, but of type int for"):
        register(DatasetSpec("paint", build_paint, stats, options={"image_size": Option("x")}))
    assert "paint" not in DATASETS
