"""Omniglot cache (Lake et al. 2015) with the Vinyals et al. 2016 class split, in torchmeta's layout.

Source (``metahyper prepare omniglot --source PATH`` or ``--download``): the official release,
``images_background.zip`` (964 characters of 30 alphabets) and ``images_evaluation.zip`` (659 of
20), from github.com/brendenlake/omniglot ``python/``; ``PATH`` is the folder holding both zips
(or their extracted ``images_background/`` and ``images_evaluation/`` folders), or one of the zips
with the other beside it. Members are ``images_background/<Alphabet>/<character>/<xxxx_yy>.png``:
105x105 binary drawings, 20 per character.

Each drawing is inverted (strokes 255 on 0, as torchmeta stores them), resized to ``image_size``
(default 28, MAML's and torchmeta's size) with PIL LANCZOS and stored grayscale, uint8
(20, S, S), at ``omniglot/data.hdf5`` ``images_<background|evaluation>/<alphabet>/<character>``;
torchmeta stores the same at 105x105. Labels ``omniglot/vinyals_{split}_labels.json`` list
``[images_..., alphabet, character]``, sorted: torchmeta's Vinyals split (1,028 / 172 / 423
characters), shipped as ``datasets/splits/omniglot/{split}.json``. With ``rotations=True`` every
character also gives three classes, rotated by 90, 180 and 270 degrees (``<character>_rot90`` ...),
in every split, as Vinyals et al. augment (4,112 / 688 / 1,692 classes); off by default.

``md-omniglot`` (:func:`build_md_omniglot`) reads the same release into Meta-Dataset's split.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from metahyper.data.layouts import SPLITS, read_split_file
from metahyper.data.sources.common import (
    MAX_FILE_BYTES,
    check_read_sizes,
    download_file,
    member_path,
    resolve_source,
    validate_classes,
)
from metahyper.data.sources.meta_dataset import Member, build_md_source
from metahyper.data.storage import fit_image, to_8bit
from metahyper.data.writing import check_memory, check_writable, estimate_size, stamp_build, write_classes_hdf5
from metahyper.errors import UserError
from metahyper.io import atomic_files, check_free_space, write_json
from metahyper.progress import progress_bar

PARTS = ("images_background", "images_evaluation")
URL = "https://github.com/brendenlake/omniglot/raw/master/python/{}.zip"
MD5 = {"images_background": "68d2efa1b9178cc56df9314c21c6e718", "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811"}
PER_CLASS = 20
CHARACTERS = 1623  # in the release; with strict=False fewer, so the size checks err on the safe side
ROTATIONS = (90, 180, 270)
FIX = "pass the folder of the official images_background.zip and images_evaluation.zip, or use --download"


def split_classes(split: str) -> list[tuple[str, str, str]]:
    """Vinyals et al.'s characters of ``split`` as sorted (images_part, alphabet, character)."""
    tree = read_split_file(f"omniglot/{split}.json")
    return sorted(
        (f"images_{part}", a, c) for part, alphabets in tree.items() for a, cs in alphabets.items() for c in cs
    )


def download_zips(root: Path) -> Path:
    """Download both official zips with torchvision (md5-checked); returns their folder."""
    target = root / "downloads" / "omniglot"
    for part in PARTS:
        download_file(
            URL.format(part), target, f"{part}.zip", MD5[part], f"download {part}.zip by hand and pass --source DIR"
        )
    return target


def _members(source: Path) -> dict[tuple[str, str, str], list[tuple[str, object]]]:
    """{(part, alphabet, character): [(file name, opener)]} from the zips or extracted folders."""
    folder = source.parent if source.is_file() else source
    found: dict[tuple[str, str, str], list[tuple[str, object]]] = {}
    for part in PARTS:
        archive, extracted = folder / f"{part}.zip", folder / part
        if archive.is_file():
            try:
                zf = zipfile.ZipFile(archive)
                infos = [i for i in zf.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise UserError(f"{archive} is truncated or not a zip archive ({err}); {FIX}") from None
            largest = max(infos, key=lambda i: i.file_size, default=None)
            if largest is not None:  # the central directory's sizes bound what a read returns
                check_read_sizes(archive, {largest.filename: largest.file_size}, MAX_FILE_BYTES, FIX)
            for info in infos:
                path = member_path(archive, info.filename, FIX)
                if any(x.startswith(".") and x != ".." or x == "__MACOSX" for x in path.parts):
                    continue  # archiver metadata (.DS_Store, __MACOSX/), not drawings
                if path.parts[0] != part or ".." in path.parts or len(path.parts) != 4 or path.suffix != ".png":
                    raise UserError(
                        f"{archive} holds {info.filename!r}, not {part}/<alphabet>/<character>/<drawing>.png; {FIX}"
                    )
                found.setdefault((part, path.parts[1], path.parts[2]), []).append(
                    (path.name, lambda zf=zf, info=info: zf.read(info))
                )
        elif extracted.is_dir():
            for png in extracted.glob("*/*/*.png"):
                key = (part, png.parent.parent.name, png.parent.name)
                found.setdefault(key, []).append((png.name, png.read_bytes))
        else:
            raise UserError(f"{folder} has neither {part}.zip nor {part}/; {FIX}")
    return found


def _load(name: str, opener, size: int, what: str) -> np.ndarray:
    try:
        payload = opener()
        with Image.open(io.BytesIO(payload)) as image:
            inverted = Image.fromarray(255 - np.asarray(to_8bit(image).convert("L"), dtype=np.uint8))
    except (OSError, ValueError, SyntaxError, EOFError, zipfile.BadZipFile, Image.DecompressionBombError) as err:
        raise UserError(f"{what}/{name} cannot be read ({type(err).__name__}: {err}); {FIX}") from None
    return fit_image(inverted, size)[..., 0]


def _check_members(members: dict, splits: dict[str, list[tuple[str, str, str]]], source: Path, strict: bool) -> None:
    """The source's characters all belong to the Vinyals split; ``strict``: it has all of them."""
    known = {key for keys in splits.values() for key in keys}
    extra = sorted(set(members) - known)
    if extra:
        raise UserError(
            f"Omniglot source {source}: {len(extra)} characters outside the Vinyals split "
            f"(e.g. {'/'.join(extra[0])}); {FIX}"
        )
    missing = sorted(key for keys in splits.values() for key in keys if key not in members)
    if strict and missing:  # before any image is decoded
        raise UserError(
            f"Omniglot source {source}: {len(missing)} characters of the Vinyals split are missing "
            f"(e.g. {'/'.join(missing[0])}); {FIX}"
        )


def _load_split(
    split: str,
    keys: list[tuple[str, str, str]],
    members: dict,
    source: Path,
    image_size: int,
    per_class: int,
    strict: bool,
    bar,
) -> dict[str, np.ndarray]:
    """The characters of one split present in the source, ``"background/alphabet/character"`` ->
    uint8 (per_class, S, S), checked (:func:`validate_classes`); at least one."""
    got = {}
    for key in keys:
        if key not in members:
            continue
        drawings = sorted(members[key], key=lambda item: item[0])
        what = f"{source}:{'/'.join(key)}"
        got["/".join(key)] = np.stack([_load(name, opener, image_size, what) for name, opener in drawings])
        bar.update(len(drawings))
    validate_classes(
        f"Omniglot {split} source {source}",
        got,
        ["/".join(k) for k in keys] if strict else None,
        per_class,
        (image_size, image_size),
        FIX,
    )
    if not got:
        raise UserError(f"Omniglot source {source} has no character of the {split} split; {FIX}")
    return got


def _rotated(classes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``classes`` and each of them rotated by the :data:`ROTATIONS` as new classes (``<key>_rot<deg>``)."""
    turned = {f"{k}_rot{deg}": np.rot90(v, deg // 90, axes=(1, 2)) for k, v in classes.items() for deg in ROTATIONS}
    return {**classes, **turned}


def build_omniglot(
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
    image_size: int = 28,
    rotations: bool = False,
    per_class: int = PER_CLASS,
) -> list[Path]:
    """Build Omniglot (torchmeta layout, Vinyals split). ``strict``: every character of the split;
    otherwise the characters present must belong to the split (tiny test sources). Every character
    needs ``per_class`` drawings (the release has 20)."""
    if image_size < 1:
        raise UserError(f"--image-size must be a positive number of pixels, got {image_size}")
    outputs = [root / "omniglot" / "data.hdf5", *(root / "omniglot" / f"vinyals_{s}_labels.json" for s in SPLITS)]
    check_writable(outputs, force, "omniglot")
    images = CHARACTERS * per_class * (1 + len(ROTATIONS) * rotations)
    check_memory(images * image_size**2, f"omniglot at {image_size} px", "use a smaller --image-size")
    check_free_space(root, estimate_size(1, images // per_class, images * image_size**2), "the omniglot cache")
    source = resolve_source(source, FIX, (lambda: download_zips(root)) if download else None)
    members = _members(source)
    splits = {s: split_classes(s) for s in SPLITS}
    _check_members(members, splits, source, strict)
    classes: dict[str, dict[str, np.ndarray]] = {}
    total = sum(len(members.get(k, [])) for keys in splits.values() for k in keys)
    with progress_bar(total=total, desc="omniglot", unit="img") as bar:
        for split, keys in splits.items():
            got = _load_split(split, keys, members, source, image_size, per_class, strict, bar)
            classes[split] = _rotated(got) if rotations else got
    with atomic_files(outputs) as (tmp_data, *tmp_labels):
        items = ((key, arr) for split in SPLITS for key, arr in classes[split].items())
        write_classes_hdf5(tmp_data, items)
        for tmp, split in zip(tmp_labels, SPLITS):
            write_json(tmp, sorted(key.split("/") for key in classes[split]))
        stamp_build(dict(zip(outputs, (tmp_data, *tmp_labels))))
    return outputs


MD_NAME, MD_SOURCE = "md-omniglot", "omniglot"


def md_classes(source: Path) -> dict[str, list[tuple[Member, None]]]:
    """``{<alphabet>-<character>: [(drawing, None), ...]}`` of the release at ``source`` (read as
    :func:`_members` reads it), Meta-Dataset's class names, drawings in file-name order."""
    return {
        f"{alphabet}-{character}": [
            (Member(f"{source}:{part}/{alphabet}/{character}/{name}", opener), None)
            for name, opener in sorted(drawings, key=lambda item: item[0])
        ]
        for (part, alphabet, character), drawings in sorted(_members(source).items())
    }


def build_md_omniglot(
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
    image_size: int = 84,
) -> list[Path]:
    """Build ``md-omniglot``: Meta-Dataset's Omniglot (25 / 5 / 20 alphabets; classes named
    ``<alphabet>-<character>`` as its specification names them), drawings stored as they are
    (black strokes on white, RGB, not inverted) at ``image_size``
    (:func:`~metahyper.data.sources.meta_dataset.build_md_source`). ``strict``: the specification's
    1,623 characters of 20 drawings; otherwise any characters of it (tiny test sources)."""
    source = resolve_source(source, FIX, (lambda: download_zips(root)) if download else None)
    return build_md_source(root, MD_NAME, MD_SOURCE, md_classes(source), image_size, force, strict)
