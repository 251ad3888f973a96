"""A build killed between its final renames: some files of the new build, the rest of the old one.
Every builder records its build's identity (:func:`metahyper.data.writing.stamp_build`), so every
split of such a mixed cache is refused when opened (by every command) and by `metahyper datasets`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.data import LAYOUTS, list_caches, open_split, prepare
from metahyper.data.layouts import Layout
from metahyper.data.registry import layout_for
from metahyper.errors import UserError
from tests.conftest import make_image_folder
from tests.data.sources.md_helpers import tar_folder
from tests.data.sources.test_md_aircraft import make_aircraft
from tests.data.sources.test_md_dtd import make_dtd
from tests.data.sources.test_md_fungi import PICK as FUNGI
from tests.data.sources.test_md_fungi import make_fungi
from tests.data.sources.test_md_mscoco import make_coco
from tests.data.sources.test_md_quickdraw import PICK as QUICKDRAW
from tests.data.sources.test_md_quickdraw import make_quickdraw
from tests.data.sources.test_md_traffic_sign import make_gtsrb
from tests.data.sources.test_md_vgg_flower import make_flowers, make_flowers_archive
from tests.data.sources.test_omniglot import make_omniglot
from tests.data.sources.test_tieredimagenet import make_tiered
from tests.faults.cache_helpers import write_tiny


def _folder(root: Path, src: Path, rebuild: bool) -> list[Path]:
    """`prepare folder` at 32 px, and the rebuild at 24 px (new image size, mean and std)."""
    if not src.exists():
        make_image_folder(src, {f"class{i}": 2 for i in range(5)})
    return prepare("folder", root=root, source=src, name="mine", image_size=24 if rebuild else 32, progress=False)


def _tiered(root: Path, src: Path, rebuild: bool) -> list[Path]:
    """A streamed builder: same classes, other images."""
    make_tiered(src / ("new" if rebuild else "old"), seed=int(rebuild))
    return prepare("tieredimagenet", root=root, source=src / ("new" if rebuild else "old"), strict=False)


def _omniglot(root: Path, src: Path, rebuild: bool) -> list[Path]:
    """One data file shared by the splits; the rebuild adds rotations (other classes)."""
    if not src.exists():
        make_omniglot(src, per_class=2)
    return prepare("omniglot", root=root, source=src, strict=False, per_class=2, rotations=rebuild)


def _glyph_like(root: Path, src: Path, rebuild: bool) -> list[Path]:
    """What every :func:`~metahyper.data.writing.write_cache` builder writes (glyphs, cifar, cub, ...)."""
    return write_tiny(root, 7 if rebuild else 5, folders=("glyphs-a",))


# Meta-Dataset's sources (build_md_source): tiny sources in each release's layout, rebuilt at another size
MD_SOURCES = {
    "md-aircraft": make_aircraft,
    "md-dtd": make_dtd,
    "md-vgg-flower": make_flowers,
    "md-traffic-sign": make_gtsrb,
    "md-quickdraw": lambda src: make_quickdraw(src, dict.fromkeys((c for cs in QUICKDRAW.values() for c in cs), 2)),
    "md-fungi": lambda src: make_fungi(src, dict.fromkeys((c for cs in FUNGI.values() for c in cs), 2)),
    "md-mscoco": make_coco,
}


def _md(name: str):
    def build(root: Path, src: Path, rebuild: bool) -> list[Path]:
        if not src.exists():
            MD_SOURCES[name](src)
        if rebuild and name == "md-traffic-sign":  # one split: the rebuild's labels must differ too
            shutil.rmtree(min((src / "GTSRB" / "Final_Training" / "Images").iterdir()))
        return prepare(name, root=root, source=src, strict=False, image_size=12 if rebuild else 16)

    return build


BUILDERS = {"folder": (_folder, "mine"), "tieredimagenet": (_tiered, "tieredimagenet")}
BUILDERS |= {"omniglot": (_omniglot, "omniglot"), "glyphs": (_glyph_like, "glyphs-a")}
BUILDERS |= {name: (_md(name), name) for name in MD_SOURCES}


def _md_archive(name: str, pack):
    """A Meta-Dataset source read in place from its release archive (``pack(src)`` writes it)."""

    def build(root: Path, src: Path, rebuild: bool) -> list[Path]:
        if not src.exists():
            pack(src)
        return prepare(name, root=root, source=src, strict=False, image_size=12 if rebuild else 16)

    return build


def _dtd_archive(src: Path) -> None:
    make_dtd(src.parent / "dtd-src")
    tar_folder(src.parent / "dtd-src", src / "dtd-r1.0.1.tar.gz", "dtd")


BUILDERS |= {"md-dtd-archive": (_md_archive("md-dtd", _dtd_archive), "md-dtd")}
BUILDERS |= {"md-vgg-flower-archive": (_md_archive("md-vgg-flower", make_flowers_archive), "md-vgg-flower")}


def _layout(name: str, root: Path) -> Layout:
    return LAYOUTS[name] if name in LAYOUTS else layout_for(name, root)


def _killed_rebuild(tmp_path: Path, builder: str, renamed: int) -> tuple[Path, str, Layout]:
    """An old build in ``data``, then the rebuild's first ``renamed`` files renamed over it."""
    build, name = BUILDERS[builder]
    root, new = tmp_path / "data", tmp_path / "new"
    outputs = build(root, tmp_path / "src", rebuild=False)
    layout = _layout(name, root)
    for split in layout.splits:
        open_split(name, split, root=root).close()  # the intact build opens
    build(new, tmp_path / "src", rebuild=True)
    for path in outputs[:renamed]:
        shutil.copyfile(new / path.relative_to(root), path)
    return root, name, layout


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_first_file_of_a_rebuild_renamed_is_refused(tmp_path, builder):
    root, name, layout = _killed_rebuild(tmp_path, builder, renamed=1)
    for split in layout.splits:
        with pytest.raises(UserError) as err:
            open_split(name, split, root=root, in_memory=True)
        message = str(err.value)
        assert "\n" not in message and "--force" in message, message
        assert "come from different builds" in message or "comes from another build" in message, message
    rows = [r for r in list_caches(root) if r.dataset == name]
    assert len(rows) == len(layout.splits) and all(r.error for r in rows)


@pytest.mark.parametrize("renamed", range(1, 7))
def test_killed_folder_rebuild_is_refused_by_every_split_and_command(tmp_path, renamed):
    """The issue's case (renamed=2): train new (24 px), val, test and the manifest old (32 px)."""
    root, name, layout = _killed_rebuild(tmp_path, "folder", renamed)
    for split in layout.splits:
        with pytest.raises(UserError, match="build"):
            open_split(name, split, root=root)
    res = CliRunner().invoke(main, ["datasets", "--root", str(root)])
    lines = [line for line in res.output.splitlines() if line.startswith(name)]
    assert res.exit_code == 0 and len(lines) == 3 and all("ERROR" in line for line in lines), res.output


def test_eval_refuses_the_killed_folder_rebuild(tmp_path, pretrained):
    root, name, _ = _killed_rebuild(tmp_path, "folder", renamed=2)
    args = ["eval", "--checkpoint", str(pretrained["wrn-10-1"]), "--dataset", name, "--split", "test"]
    args += ["--shots", "1", "--ways", "2", "--queries", "1", "--episodes", "1", "--data-root", str(root)]
    res = CliRunner().invoke(main, [*args, "--device", "cpu", "--quiet", "-o", str(tmp_path / "eval.json")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "come from different builds" in res.output and "prepare folder" in res.output, res.output
    assert not (tmp_path / "eval.json").exists()
