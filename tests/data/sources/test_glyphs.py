"""Built-in glyph dataset: default class/domain counts, determinism, layout."""

from __future__ import annotations

import numpy as np

from metahyper.data import EpisodeSampler, open_split, prepare
from metahyper.data.sources.glyphs import DOMAINS, SCRIPTS, glyph_classes


def test_default_config_counts():
    classes = glyph_classes()  # class lists of the default build, no dataset rendering
    total = sum(len(v) for d in DOMAINS for v in classes[d].values())
    assert total >= 1000
    for d in DOMAINS:
        counts = {s: len(classes[d][s]) for s in ("train", "val", "test")}
        assert min(counts.values()) >= 100, counts
        names = [n for s in counts for n, _ in classes[d][s]]
        assert len(names) == len(set(names))  # splits are class-disjoint
        scripts = {n.split("-U+")[0] for n in names}
        assert scripts == {s.name for s in SCRIPTS if s.domain == d}


def test_reduced_build_deterministic(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        prepare("glyphs", root=root, max_per_script=10, images_per_class=20, workers=1)
    for d in DOMAINS:
        for split in ("train", "val", "test"):
            a, b = (open_split(d, split, root=r, in_memory=True) for r in roots)
            assert a.classes == b.classes
            assert np.array_equal(a._ram, b._ram)  # byte-identical
            assert all(a.images_per_class(c) == 20 for c in range(a.num_classes))
            assert a.image_size == (32, 32)
    train = open_split("glyphs-a", "train", root=roots[0])
    assert train.num_classes == 5 * 6  # 5 scripts x round(0.64 * 10)
    x = train.read(0, range(20))
    assert x.max() == 255 and len({im.tobytes() for im in x}) == 20  # varied renderings
    ep = EpisodeSampler(train, ways=5, shots=1, queries=15, seed=0).episode(0)
    assert ep.query_x.shape == (75, 3, 32, 32)
