"""The glyphs dataset builds identically on every matplotlib the package allows (>= 3.7): its
fonts are files that all of them ship, byte for byte, and rendering them gives pinned pixels.
CI runs this on the oldest and the newest supported Python (matplotlib 3.10 and 3.11 there)."""

from __future__ import annotations

import hashlib

import matplotlib
import pytest

from metahyper.data.sources import glyphs
from metahyper.errors import UserError

# sha256 (first 16 hex digits) of each font, the same in the wheels of matplotlib 3.7.0, 3.10.9, 3.11.2
FONT_SHA256 = {
    "DejaVuSans.ttf": "3fdf69cabf06049e",
    "DejaVuSans-Bold.ttf": "b184b89e3c1075f2",
    "DejaVuSans-Oblique.ttf": "ccdf74b350f11fd3",
    "DejaVuSans-BoldOblique.ttf": "6edf0283160186af",
    "DejaVuSerif.ttf": "107244956e9962b9",
    "DejaVuSerif-Bold.ttf": "c3753f2ed6bc673f",
    "DejaVuSerif-Italic.ttf": "3e7994fbc54fa10c",
    "DejaVuSerif-BoldItalic.ttf": "d93efec7a9d2e826",
    "DejaVuSansMono.ttf": "602ec86b8948cfcd",
    "DejaVuSansMono-Bold.ttf": "baada9a5172fe208",
    "DejaVuSansMono-Oblique.ttf": "28052813f7a709fc",
    "DejaVuSansMono-BoldOblique.ttf": "a69081c15c76c827",
    "STIXGeneral.ttf": "167378031e2dddc6",
    "STIXGeneralBol.ttf": "e8533dc7083fa346",
    "STIXGeneralItalic.ttf": "6cfcb333d22b7c3c",
    "STIXGeneralBolIta.ttf": "98788fd4ba48dfbb",
    "cmr10.ttf": "4dd9761b058c009d",
    "cmb10.ttf": "074497b50c43ea57",
    "cmss10.ttf": "7df91a83d05b2e47",
    "cmtt10.ttf": "6211f09ae9359999",
}
# The same digest from matplotlib 3.10.9 + Pillow 12.3 and matplotlib 3.11.2 + Pillow 13.0.
RENDERED_SHA256 = "96e5c095bb4e3e014a9a43033fe05690e9c9257f6153726692d617399be21c6e"


def test_fonts_shipped_unchanged_by_this_matplotlib():
    assert [name for name, _ in glyphs.FONTS] == list(FONT_SHA256)
    for name, digest in FONT_SHA256.items():
        path = glyphs.font_dir() / name
        assert path.is_file(), f"matplotlib {matplotlib.__version__} lacks {name}"
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:16] == digest, name


def test_rendering_is_pinned():
    """Every font at two letters, and the image recipe on one character of each kind of script."""
    h = hashlib.sha256()
    for name, _ in glyphs.FONTS:
        for cp in (0x41, 0x67):
            h.update(glyphs.render(cp, name, 16, angle=7.0, stroke=1).tobytes())
    for cp in (0x3B6, 0x429, 0x5D0, 0x2D35, 0x1401, 0x28FF, 0x21C4, 0x222B):
        fonts = glyphs._fonts_for(cp)
        h.update(repr(fonts).encode())
        h.update(glyphs._class_images(cp, fonts, 16, 4, 0).tobytes())
    assert h.hexdigest() == RENDERED_SHA256


def test_missing_font_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(glyphs, "font_dir", lambda: tmp_path)
    with pytest.raises(UserError, match=r"font DejaVuSans\.ttf is missing from matplotlib .*; reinstall matplotlib"):
        glyphs.build_glyphs(tmp_path / "data")
