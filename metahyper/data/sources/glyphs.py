"""Built-in offline dataset: Omniglot-like glyphs rendered from the fonts inside matplotlib.

Each class is one Unicode character; its images vary font family (DejaVu Sans/Serif/Mono, STIX,
Computer Modern roman, bold, sans and typewriter for ASCII letters), weight, slant, stroke width,
scale, rotation and position.
Characters come from each font's cmap (matplotlib's ``FT2Font.get_charmap``), are grouped into
scripts by Unicode block, and the scripts into two domains (``docs/datasets.md``, "glyphs"):

* ``glyphs-a``: alphabets of Europe and the Caucasus (Latin + IPA, Greek, Cyrillic, Armenian, Georgian);
* ``glyphs-b``: other scripts and symbols (Hebrew, Arabic, N'Ko, Tifinagh, Canadian syllabics,
  Ogham, Braille, arrows, mathematical operators).

Letters with a canonical/compatibility decomposition (accented forms) are left out, and a glyph
whose plain rendering duplicates an earlier one of its domain (Latin A, Greek Alpha, Cyrillic A) is
kept once. Every script's classes are split 64/16/20 % into train/val/test. Image ``j`` of a class
depends only on ``(seed, codepoint, j)``, so builds are byte-identical. :data:`FONTS` holds only
font files that every matplotlib the package allows ships, byte-identical from 3.7 to 3.11
(``cmti10.ttf``, for one, first ships in 3.11); each cache file records its content hash. Written in the per-split
layout: ``glyphs-a/{split}_data.hdf5`` + ``{split}_labels.json``, white glyphs on black, RGB.
"""

from __future__ import annotations

import functools
import os
import unicodedata
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metahyper.data.layouts import SPLITS
from metahyper.data.writing import check_memory, check_writable, estimate_size, split_paths, write_splits
from metahyper.errors import UserError
from metahyper.io import check_free_space
from metahyper.progress import progress_bar

DOMAINS = ("glyphs-a", "glyphs-b")
SPLIT_FRACTIONS = (0.64, 0.16, 0.20)
IMAGE_SIZES = (8, 512)  # the --image-size range: legible glyphs up to well past any model input


@dataclass(frozen=True)
class Script:
    name: str
    domain: str
    ranges: tuple[tuple[int, int], ...]
    categories: str  # first letters of accepted Unicode general categories ("L", "S")


SCRIPTS = (
    Script("latin", "glyphs-a", ((0x0041, 0x024F), (0x0250, 0x02AF)), "L"),
    Script("greek", "glyphs-a", ((0x0370, 0x03FF),), "L"),
    Script("cyrillic", "glyphs-a", ((0x0400, 0x052F),), "L"),
    Script("armenian", "glyphs-a", ((0x0530, 0x058F),), "L"),
    Script("georgian", "glyphs-a", ((0x10A0, 0x10FF),), "L"),
    Script("hebrew", "glyphs-b", ((0x0590, 0x05FF),), "L"),
    Script("arabic", "glyphs-b", ((0x0600, 0x06FF),), "L"),
    Script("nko", "glyphs-b", ((0x07C0, 0x07FF),), "L"),
    Script("tifinagh", "glyphs-b", ((0x2D30, 0x2D7F),), "L"),
    Script("canadian", "glyphs-b", ((0x1400, 0x167F),), "L"),
    Script("ogham", "glyphs-b", ((0x1680, 0x169F),), "L"),
    Script("braille", "glyphs-b", ((0x2801, 0x28FF),), "S"),
    Script("arrows", "glyphs-b", ((0x2190, 0x21FF),), "S"),
    Script("math", "glyphs-b", ((0x2200, 0x22FF),), "S"),
)

# (file, usable for which code points: None = whole cmap, "ascii" = A-Z a-z only: TeX-encoded cmaps).
# Only files shipped, unchanged, by every matplotlib >= 3.7 (tests/faults/test_glyph_fonts.py).
FONTS = tuple(
    [
        (f"DejaVu{fam}{style}.ttf", None)
        for fam in ("Sans", "Serif", "SansMono")
        for style in (
            "",
            "-Bold",
            "-Oblique" if fam != "Serif" else "-Italic",
            "-BoldOblique" if fam != "Serif" else "-BoldItalic",
        )
    ]
    + [(f"STIXGeneral{s}.ttf", None) for s in ("", "Bol", "Italic", "BolIta")]
    + [(f"cm{s}10.ttf", "ascii") for s in ("r", "b", "ss", "tt")]
)


def font_dir() -> Path:
    """matplotlib's folder of TrueType fonts (matplotlib is imported when a build needs it)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def check_fonts() -> None:
    """A :class:`UserError` naming the first font of :data:`FONTS` missing from matplotlib."""
    import matplotlib

    for name, _ in FONTS:
        if not (font_dir() / name).is_file():
            raise UserError(
                f"font {name} is missing from matplotlib {matplotlib.__version__} ({font_dir()}); "
                "reinstall matplotlib (`pip install --force-reinstall 'matplotlib>=3.7'`)"
            )


@functools.cache
def _charmap(name: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(str(font_dir() / name)).get_charmap())


@functools.lru_cache(maxsize=4096)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def _fonts_for(cp: int) -> tuple[str, ...]:
    ascii_letter = chr(cp).isascii() and chr(cp).isalpha()
    return tuple(n for n, only in FONTS if cp in _charmap(n) and (only is None or ascii_letter))


def render(
    cp: int,
    font: str,
    size: int,
    scale: float = 0.7,
    angle: float = 0.0,
    dx: float = 0.0,
    dy: float = 0.0,
    stroke: int = 0,
) -> np.ndarray:
    """One glyph, white on black, uint8 (size, size): drawn at 2x, fitted to ``scale`` of the
    canvas, shifted by ``(dx, dy)`` canvas fractions, rotated by ``angle`` degrees, downsampled."""
    big = 2 * size
    ch = chr(cp)
    left, top, right, bottom = _font(font, 64).getbbox(ch, stroke_width=stroke)
    extent = max(right - left, bottom - top, 1)
    pt = int(np.clip(round(64 * scale * big / extent), 4, 4 * big))
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    f = _font(font, pt)
    left, top, right, bottom = f.getbbox(ch, stroke_width=stroke)
    x = big / 2 + dx * big - (left + right) / 2
    y = big / 2 + dy * big - (top + bottom) / 2
    draw.text((x, y), ch, fill=255, font=f, stroke_width=stroke, stroke_fill=255)
    if angle:
        canvas = canvas.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.uint8)


def _class_images(cp: int, fonts: tuple[str, ...], size: int, count: int, seed: int) -> np.ndarray:
    """``count`` varied images of one character: uint8 (count, size, size, 3)."""
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for j in range(count):
        rng = np.random.default_rng([seed, cp, j])
        font = fonts[rng.integers(len(fonts))]
        img = render(
            cp,
            font,
            size,
            scale=rng.uniform(0.55, 0.85),
            angle=rng.uniform(-15, 15),
            dx=rng.uniform(-0.08, 0.08),
            dy=rng.uniform(-0.08, 0.08),
            stroke=int(rng.integers(0, 3)),
        )
        out[j] = img[..., None]
    return out


@functools.cache
def _candidates(script: Script) -> list[int]:
    cps = []
    for lo, hi in script.ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if (
                unicodedata.category(ch)[0] in script.categories
                and not unicodedata.decomposition(ch)
                and "DejaVuSans.ttf" in {n for n in _fonts_for(cp)}
            ):
                cps.append(cp)
    return cps


def glyph_classes(
    image_size: int = 32, max_per_script: int | None = None, seed: int = 0
) -> dict[str, dict[str, list[tuple[str, int]]]]:
    """The class lists without rendering the datasets: ``{domain: {split: [(name, codepoint)]}}``.

    ``max_per_script`` keeps only the first classes of each script (small test builds).
    """
    out: dict[str, dict[str, list[tuple[str, int]]]] = {d: {s: [] for s in SPLITS} for d in DOMAINS}
    seen: dict[str, set[bytes]] = {d: set() for d in DOMAINS}
    for k, script in enumerate(SCRIPTS):
        kept = []
        for cp in _candidates(script):
            plain = render(cp, "DejaVuSans.ttf", image_size)
            key = plain.tobytes()
            if plain.max() < 128 or key in seen[script.domain]:  # blank or duplicate glyph
                continue
            seen[script.domain].add(key)
            kept.append(cp)
        if max_per_script is not None:
            kept = kept[:max_per_script]
        order = np.random.default_rng([seed, k]).permutation(len(kept))
        n_train = int(round(SPLIT_FRACTIONS[0] * len(kept)))
        n_val = int(round(SPLIT_FRACTIONS[1] * len(kept)))
        bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(kept))}
        for split, (a, b) in bounds.items():
            out[script.domain][split] += [(f"{script.name}-U+{kept[i]:04X}", kept[i]) for i in sorted(order[a:b])]
    return out


def _render_class(args: tuple[int, int, int, int]) -> np.ndarray:
    cp, size, count, seed = args
    return _class_images(cp, _fonts_for(cp), size, count, seed)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity set where the OS has one (Linux), else all."""
    if hasattr(os, "sched_getaffinity"):  # absent on macOS and Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_glyphs(
    root: Path,
    image_size: int = 32,
    images_per_class: int = 20,
    force: bool = False,
    max_per_script: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    max_memory: float | None = None,
) -> list[Path]:
    """Render ``glyphs-a`` and ``glyphs-b`` (all splits) into the cache root; deterministic.

    Sizes, memory (at most ``max_memory`` GB, default: the memory available), disk space and
    fonts are checked before rendering. All twelve files are replaced together or not at all.
    """
    if max_memory is not None and not max_memory > 0:
        raise UserError(f"--max-memory takes a positive number of GB, got {max_memory}")
    lo, hi = IMAGE_SIZES
    if not lo <= image_size <= hi:
        raise UserError(f"--image-size {image_size} is outside {lo}..{hi} for glyphs; pick a size in that range")
    if images_per_class < 1:
        raise UserError(f"images_per_class must be >= 1, got {images_per_class}")
    outputs = [p for d in DOMAINS for s in SPLITS for p in split_paths(root, d, s)]
    check_writable(outputs, force, "glyphs")
    check_fonts()
    n_classes = sum(min(len(_candidates(sc)), max_per_script or 10**9) for sc in SCRIPTS)  # upper bound
    image_bytes = images_per_class * image_size * image_size * 3
    check_memory(
        n_classes * image_bytes,
        f"the glyphs dataset at {image_size} px",
        "use a smaller --image-size" + (" or a larger --max-memory" if max_memory is not None else ""),
        int(max_memory * 2**30) if max_memory is not None else None,
    )
    check_free_space(
        root,
        estimate_size(len(outputs) // 2, n_classes, n_classes * image_bytes),
        f"the glyphs cache ({image_size} px)",
    )
    classes = glyph_classes(image_size, max_per_script, seed)
    jobs = [(d, s, name, cp) for d in DOMAINS for s in SPLITS for name, cp in classes[d][s]]
    args = [(cp, image_size, images_per_class, seed) for *_, cp in jobs]
    workers = workers if workers is not None else min(usable_cpus(), 4)
    with progress_bar(total=len(jobs), desc="glyphs", unit="class") as bar:
        if workers > 1 and len(jobs) > 50:
            with ProcessPoolExecutor(workers) as pool:
                arrays = [a for a in pool.map(_render_class, args, chunksize=32) if bar.update(1) or True]
        else:
            arrays = [a for a in map(_render_class, args) if bar.update(1) or True]
    rendered = {(d, s, name): a for (d, s, name, _), a in zip(jobs, arrays)}
    splits = {}
    for d in DOMAINS:
        for s in SPLITS:
            names = [name for name, _ in classes[d][s]]
            splits[(d, s)] = ({n: rendered[(d, s, n)] for n in names}, names)
    write_splits(root, splits)
    return outputs
