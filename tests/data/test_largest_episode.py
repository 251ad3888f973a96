"""``largest_episode``: bounds of any episode's ways, support and query images, from the class
counts alone (what meta-training's memory check is fed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metahyper.data import open_split
from metahyper.data.variable_episodes import MultiSourceSampler, VariableEpisodeSampler
from tests.data.test_variable_episodes import write_counted_split


@pytest.fixture
def splits(tmp_path: Path):
    """Two train splits: 60 classes of 6 to 300 images, and 7 classes of 4 to 10."""
    root = tmp_path / "data"
    write_counted_split(root, "miniimagenet", "train", [6 + 49 * (c % 7) for c in range(60)])
    write_counted_split(root, "cub", "train", [4, 5, 6, 7, 8, 9, 10])
    return open_split("miniimagenet", "train", root=root), open_split("cub", "train", root=root)


def _drawn(sampler, n: int = 400) -> np.ndarray:
    """``(ways, support, query)`` of the first ``n`` episodes' plans."""
    plans = [sampler.plan(i) for i in range(n)]
    return np.array([(len(p.classes), int(p.shots.sum()), p.queries * len(p.classes)) for p in plans])


@pytest.mark.parametrize("over", [{}, {"shots": 2}, {"queries": 1}, {"ways": 5}])
def test_no_drawn_episode_exceeds_the_bounds(splits, over):
    for data in splits:
        sampler = VariableEpisodeSampler(data, seed=1, **over)
        bound = np.array(sampler.largest_episode())
        drawn = _drawn(sampler)
        assert (drawn <= bound).all(), (data.name, over)
        assert drawn[:, 0].max() == bound[0]  # the ways bound is reached


def test_bounds_by_hand_and_over_sources(splits):
    big, small = (VariableEpisodeSampler(d) for d in splits)
    # 50 ways; the 50 largest classes hold far more than 500 support images; 50 x 10 queries
    assert big.largest_episode() == (50, 500, 500)
    # 7 ways; support <= 4+5+...+10 = 49; queries: n classes of the n largest counts, Q <= count // 2
    assert small.largest_episode() == (7, 49, max(n * min(10, c // 2) for n, c in enumerate(range(10, 3, -1), 1)))
    assert MultiSourceSampler([big, small]).largest_episode() == (50, 500, 500)
    fixed = VariableEpisodeSampler(splits[1], ways=3, shots=1, queries=2)
    assert fixed.largest_episode() == (3, 3, 6)
