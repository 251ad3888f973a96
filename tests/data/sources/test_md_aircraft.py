"""md-aircraft on a tiny extracted fgvc-aircraft-2013b.tar.gz (data/images, images_box.txt, images_variant_*.txt)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metahyper.data import open_split, prepare
from metahyper.errors import UserError

# variant -> (split, colour inside its images' boxes); F/A-18 and F-16A/B hold a '/', Cessna 172 a space
VARIANTS = {
    "F/A-18": ("train", (200, 30, 30)),
    "F-16A/B": ("train", (30, 200, 30)),
    "Cessna 172": ("train", (30, 30, 200)),
    "737-900": ("val", (200, 200, 30)),
    "737-400": ("test", (30, 200, 200)),
}


def make_aircraft(top, per_variant: int = 3) -> dict[str, list[str]]:
    """``top/fgvc-aircraft-2013b/data/`` in the release's layout: JPEGs with a grey background, a
    white 20-pixel banner at the bottom and the variant's colour inside the box; images split
    between the trainval and test variant files. Returns {variant: image ids}."""
    data = top / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    ids, boxes, lines = {}, [], {"trainval": [], "test": []}
    for v, (variant, (_, colour)) in enumerate(VARIANTS.items()):
        ids[variant] = [f"{1000000 + 7 * (per_variant - k) + v:07d}" for k in range(per_variant)]  # not sorted
        for k, image_id in enumerate(ids[variant]):
            h, w = 60 + 4 * k, 90 + 6 * k
            pixels = np.full((h, w, 3), 128, np.uint8)
            pixels[h - 20 :] = 255
            box = (10 + k, 5, w - 12, h - 25)  # xmin ymin xmax ymax, PIL's crop box as Meta-Dataset uses it
            pixels[box[1] : box[3], box[0] : box[2]] = colour
            Image.fromarray(pixels).save(data / "images" / f"{image_id}.jpg", quality=98, subsampling=0)
            boxes.append(f"{image_id} {' '.join(map(str, box))}")
            lines["test" if k == 0 else "trainval"].append(f"{image_id} {variant}")
    (data / "images_box.txt").write_text("\n".join(boxes) + "\n")
    for part, rows in lines.items():
        (data / f"images_variant_{part}.txt").write_text("\n".join(rows) + "\n")
    (data / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    return ids


def test_build_crops_to_the_box(tmp_path):
    make_aircraft(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(UserError, match="md-aircraft: class 'A340-300' of Meta-Dataset's aircraft specification"):
        prepare("md-aircraft", root=root, source=tmp_path)
    prepare("md-aircraft", root=root, source=tmp_path / "fgvc-aircraft-2013b", strict=False, image_size=24)
    for split in ("train", "val", "test"):
        data = open_split("md-aircraft", split, root=root)
        assert sorted(data.classes) == sorted(v for v, (s, _) in VARIANTS.items() if s == split)
        for c, variant in enumerate(data.classes):
            assert data.images_per_class(c) == 3
            images = data.read(c, [0, 1, 2]).astype(int)  # the box only: no grey, no banner
            assert np.abs(images - VARIANTS[variant][1]).max() <= 12
    assert open_split("md-aircraft", "train", root=root).classes == ["F-16A/B", "F/A-18", "Cessna 172"]


def test_bad_annotations(tmp_path):
    ids = make_aircraft(tmp_path)
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    boxes = (data / "images_box.txt").read_text()
    first = ids["737-400"][0]
    (data / "images_box.txt").write_text(boxes.replace(f"{first} 10 5", f"{first} 500 5"))
    with pytest.raises(UserError, match=rf"image .*{first}.jpg: box \(500, 5, 78, 35\) is empty or outside"):
        prepare("md-aircraft", root=tmp_path / "out", source=data, strict=False)
    (data / "images_box.txt").write_text("".join(line + "\n" for line in boxes.splitlines()[1:]))
    with pytest.raises(UserError, match=r"images_box.txt has no box for image \d{7}"):
        prepare("md-aircraft", root=tmp_path / "out", source=data, strict=False)
    (data / "images_box.txt").write_text(boxes)
    (data / "images" / f"{first}.jpg").unlink()
    with pytest.raises(UserError, match=rf"md-aircraft: image .*{first}.jpg is missing"):
        prepare("md-aircraft", root=tmp_path / "out", source=data, strict=False)
    (data / "images_variant_test.txt").unlink()
    with pytest.raises(UserError, match="images_variant_test.txt is missing; extract fgvc-aircraft-2013b.tar.gz"):
        prepare("md-aircraft", root=tmp_path / "out", source=data, strict=False)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # the bad box: no file written
