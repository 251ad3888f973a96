"""Meta-Dataset's variable-way variable-shot sampler: the rules over many episodes, the formulas by
hand, determinism and worker invariance, overrides, class groups (ILSVRC's DAG, Omniglot's
alphabets) and multi-source episodes, on tiny generated caches."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from metahyper.data import EpisodeSampler, meta_batches, open_split, to_tensor
from metahyper.data.class_groups import class_groups, ilsvrc_groups
from metahyper.data.layouts import read_split_file
from metahyper.data.variable_episodes import (
    MultiSourceSampler,
    VariableEpisodeSampler,
    query_count,
    support_set_size,
    support_shots,
)
from metahyper.data.writing import write_split
from metahyper.errors import UserError

SIZES = (6, 20, 40, 200)  # images per class, in turn


def write_counted_split(root: Path, folder: str, split: str, counts, names=None, size: int = 4) -> list[str]:
    """A per-split cache whose pixel (0, 0) holds (class, image index % 256, image index // 256)."""
    names = names or [f"n{c:08d}" for c in range(len(counts))]
    classes = {}
    for c, (name, n) in enumerate(zip(names, counts)):
        arr = np.zeros((n, size, size, 3), dtype=np.uint8)
        arr[:, 0, 0, 0] = c % 256
        arr[:, 0, 0, 1] = np.arange(n) % 256
        arr[:, 0, 0, 2] = np.arange(n) // 256
        classes[name] = arr
    write_split(root, folder, split, classes, names)
    return names


@pytest.fixture
def varied(tmp_path: Path):
    """miniimagenet-layout train split: 60 classes of 6, 20, 40 and 200 images in turn."""
    root = tmp_path / "data"
    write_counted_split(root, "miniimagenet", "train", [SIZES[c % 4] for c in range(60)])
    return open_split("miniimagenet", "train", root=root)


def test_rules_hold_over_many_episodes(varied):
    sampler = VariableEpisodeSampler(varied, seed=3)
    counts = np.array([varied.images_per_class(c) for c in range(varied.num_classes)])
    ways, totals, by_size = [], [], {n: [] for n in SIZES}
    for i in range(3000):
        plan = sampler.plan(i)
        n, c = len(plan.classes), counts[plan.classes]
        ways.append(n)
        assert len(set(plan.classes.tolist())) == n
        assert plan.queries == min(10, c.min() // 2)
        assert plan.shots.min() >= 1 and (plan.shots <= c - plan.queries).all()
        assert plan.shots.sum() <= 500
        for images, k, cc in zip(plan.images, plan.shots, c):
            assert len(images) == k + plan.queries and len(set(images.tolist())) == len(images) and images.max() < cc
        totals.append(plan.shots.sum())
        if 6 not in c:  # shots not clipped by the 6-image classes' few images
            for k, cc in zip(plan.shots, c):
                by_size[cc].append(k)
    hist = np.bincount(ways, minlength=51)
    assert hist[:5].sum() == 0 and (hist[5:51] > 25).all()  # uniform over 5..50 (65 expected each)
    assert abs(np.mean(ways) - 27.5) < 1.0
    assert max(totals) > 490 and np.mean(np.array(totals) >= 450) > 0.2  # the cap binds often with 200s
    assert np.mean(by_size[200]) > 3 * np.mean(by_size[20])  # shots follow class size (x10 here)


def test_formulas_by_hand():
    counts = np.array([20, 20, 20, 20, 20])
    assert query_count(counts) == 10 and query_count(np.array([7, 30])) == 3
    assert query_count(np.array([12, 30]), shots=5) == 7 and query_count(np.array([40, 30]), shots=5) == 10
    left = counts - 10
    assert support_set_size(left, 0.5) == 5 * (5 + 1)
    assert support_set_size(np.array([300] * 40), 0.99) == 500  # 40 * 100 capped
    assert support_set_size(np.array([3, 150]), 0.0) == 2  # at least one per class
    assert support_shots(counts, left, 30, np.zeros(5)).tolist() == [6] * 5  # floor(0.2 * 25) + 1
    shots = support_shots(np.array([10, 30]), np.array([5, 100]), 42, np.array([0.0, np.log(2)]))
    assert shots.tolist() == [min(int(40 * 10 / 70) + 1, 5), int(40 * 60 / 70) + 1]  # [5 (clipped), 35]


def test_episode_tensors_follow_the_plan(varied):
    sampler = VariableEpisodeSampler(varied, seed=1, image_size=6)
    plan, ep = sampler.plan(4), sampler.episode(4)
    n, k = len(plan.classes), plan.shots
    assert ep.support_x.shape == (k.sum(), 3, 6, 6) and ep.query_x.shape == (n * plan.queries, 3, 6, 6)
    assert ep.support_y.tolist() == [c for c in range(n) for _ in range(k[c])]
    assert ep.query_y.tolist() == [c for c in range(n) for _ in range(plan.queries)]
    assert ep.classes.tolist() == plan.classes.tolist()
    rows = [varied.read(c, im) for c, im in zip(plan.classes, plan.images)]
    support = np.concatenate([r[: k[i]] for i, r in enumerate(rows)])
    query = np.concatenate([r[k[i] :] for i, r in enumerate(rows)])
    assert (support[:, 0, 0, 0] == np.repeat(plan.classes, k)).all()  # each row from its class
    torch.testing.assert_close(ep.support_x, to_tensor(support, *sampler.normalization, size=6))
    torch.testing.assert_close(ep.query_x, to_tensor(query, *sampler.normalization, size=6))


def test_deterministic_per_seed_and_worker_invariant(varied):
    sampler = VariableEpisodeSampler(varied, seed=5)
    again = VariableEpisodeSampler(varied, seed=5)
    other = VariableEpisodeSampler(varied, seed=6)
    for i in (0, 7, 10**8):
        assert all(torch.equal(a, b) for a, b in zip(sampler.episode(i), again.episode(i)))
    assert [len(sampler.plan(i).classes) for i in range(20)] != [len(other.plan(i).classes) for i in range(20)]
    serial = list(meta_batches(sampler, batch_size=3, start=2, num_batches=2))
    parallel = list(meta_batches(sampler, batch_size=3, start=2, num_batches=2, num_workers=2))
    for j, (a, b) in enumerate(zip(serial, parallel, strict=True)):
        for m, (e0, e1) in enumerate(zip(a, b, strict=True)):
            assert all(torch.equal(t, u) for t, u in zip(e0, e1))
            assert torch.equal(e0.classes, sampler.episode((2 + j) * 3 + m).classes)
    assert len({e.support_x.shape[0] for mb in serial for e in mb}) > 1  # unequal sizes, not padded


def test_overrides(varied):
    counts = np.array([varied.images_per_class(c) for c in range(varied.num_classes)])
    for i in range(200):
        plan = VariableEpisodeSampler(varied, ways=7, seed=2).plan(i)
        assert len(plan.classes) == 7 and plan.shots.min() >= 1
        plan = VariableEpisodeSampler(varied, shots=3, seed=2).plan(i)
        assert (plan.shots == 3).all() and plan.queries == min(10, (counts[plan.classes] - 3).min())
        plan = VariableEpisodeSampler(varied, queries=4, seed=2).plan(i)
        assert plan.queries == 4 and 5 <= len(plan.classes) <= 50 and plan.shots.sum() <= 500
    fixed = VariableEpisodeSampler(varied, ways=5, shots=1, queries=5, seed=9)
    today = EpisodeSampler(varied, 5, 1, 5, seed=9)
    for i in (0, 3):  # all three fixed: exactly today's N-way K-shot episodes
        assert all(torch.equal(a, b) for a, b in zip(fixed.episode(i), today.episode(i)))


def test_refusals_are_one_line(tmp_path, varied):
    write_counted_split(tmp_path / "d", "cub", "test", [30] * 4)
    few = open_split("cub", "test", root=tmp_path / "d")
    cases = [
        (lambda: VariableEpisodeSampler(few), "need 5 classes but cub test has 4; pass --ways 4"),
        (lambda: VariableEpisodeSampler(varied, shots=6), "need 7 images per class"),
        (lambda: VariableEpisodeSampler(varied, queries=6), "need 7 images per class"),
        (lambda: VariableEpisodeSampler(varied, ways=61), "need 61 classes"),
        (lambda: VariableEpisodeSampler(varied, shots=0), "invalid episode shape"),
        (
            lambda: MultiSourceSampler(
                [VariableEpisodeSampler(few, ways=4), VariableEpisodeSampler(varied, image_size=8)]
            ),
            "different sizes",
        ),
        (lambda: MultiSourceSampler([VariableEpisodeSampler(varied)], weights="classes"), "'uniform' or 'size'"),
    ]
    for make, message in cases:
        with pytest.raises(UserError, match=message) as err:
            make()
        assert "\n" not in str(err.value)
    VariableEpisodeSampler(varied, shots=5)  # exactly enough: 5 shots + 1 query of 6 images


def test_ilsvrc_episodes_take_the_leaves_of_one_node(tmp_path):
    graph = read_split_file("meta-dataset/dataset_specs/ilsvrc_2012_dataset_spec.json")["split_subgraphs"]["TEST"]
    leaves = sorted(n["wn_id"] for n in graph if not n["children_ids"])
    write_counted_split(tmp_path / "d", "miniimagenet", "test", [4] * len(leaves), names=leaves)
    data = open_split("miniimagenet", "test", root=tmp_path / "d")
    groups = ilsvrc_groups(data)
    assert len(groups.groups) == len(graph) and max(len(g) for g in groups.groups) == 130  # the root spans all
    eligible = [set(g.tolist()) for g in groups.eligible(5)]
    assert all(5 <= len(g) <= 392 for g in eligible) and len(eligible) < len(graph)
    sampler = VariableEpisodeSampler(data, groups=groups, seed=0)
    for i in range(300):
        chosen = set(sampler.plan(i).classes.tolist())
        assert any(chosen <= g and len(chosen) == min(50, len(g)) for g in eligible)
    write_counted_split(tmp_path / "e", "miniimagenet", "test", [4] * 129, names=leaves[1:])
    with pytest.raises(UserError, match=f"lacks class '{leaves[0]}'"):
        ilsvrc_groups(open_split("miniimagenet", "test", root=tmp_path / "e"))
    write_counted_split(tmp_path / "f", "miniimagenet", "val", [4] * 130, names=leaves)
    with pytest.raises(UserError, match="is not in the val leaves"):  # test's leaves are not val's
        ilsvrc_groups(open_split("miniimagenet", "val", root=tmp_path / "f"))


def _omniglot_cache(root: Path, characters: dict[str, int]) -> None:
    """An omniglot-layout train split (torchmeta's grouped layout) of ``alphabet: characters``."""
    (root / "omniglot").mkdir(parents=True)
    labels = [["images_background", a, f"character{c:02d}"] for a, n in characters.items() for c in range(1, n + 1)]
    labels.append(["images_background", "Greek", "character01_rot90"])
    with h5py.File(root / "omniglot" / "data.hdf5", "w") as f:
        for key in labels:
            f.create_dataset("/".join(key), data=np.zeros((20, 4, 4), dtype=np.uint8))
    (root / "omniglot" / "vinyals_train_labels.json").write_text(json.dumps(labels))


def test_omniglot_episodes_stay_in_one_alphabet(tmp_path):
    _omniglot_cache(tmp_path / "d", {"Greek": 24, "Latin": 26, "Futurama": 26, "Braille": 3})
    data = open_split("omniglot", "train", root=tmp_path / "d")
    groups = class_groups(data)
    alphabet = [c.split("/")[1] for c in data.classes]
    assert sorted(len(g) for g in groups.groups) == [3, 25, 26, 26]  # the rotated copy joins Greek
    sampler = VariableEpisodeSampler(data, seed=1)  # groups="auto": omniglot's alphabets
    uniform = VariableEpisodeSampler(data, groups=None, seed=1)
    assert all(len({alphabet[c] for c in uniform.plan(i).classes}) > 1 for i in range(20))
    seen = set()
    for i in range(300):
        plan = sampler.plan(i)
        names = {alphabet[c] for c in plan.classes}
        assert len(names) == 1 and 5 <= len(plan.classes) <= 26 and plan.queries == 10
        seen |= names
    assert seen == {"Greek", "Latin", "Futurama"}  # Braille's 3 characters cannot fill 5 ways
    _omniglot_cache(tmp_path / "e", {"Klingon": 5})
    with pytest.raises(UserError, match="'images_background/Klingon/character01' is no character"):
        class_groups(open_split("omniglot", "train", root=tmp_path / "e"))


def test_multi_source_draws_sources_then_episodes(tmp_path, varied):
    write_counted_split(tmp_path / "d", "cub", "train", [50] * 10)
    small = open_split("cub", "train", root=tmp_path / "d")  # 500 images against varied's 4,000
    sources = [VariableEpisodeSampler(varied), VariableEpisodeSampler(small)]
    uniform = MultiSourceSampler(sources, seed=4)
    picks = np.array([uniform.source_and_plan(i)[0] for i in range(2000)])
    assert abs(picks.mean() - 0.5) < 0.05
    by_size = MultiSourceSampler(sources, seed=4, weights="size")
    assert abs(np.mean([by_size.source_and_plan(i)[0] for i in range(2000)]) - 500 / 4500) < 0.03
    for i in range(6):
        k, plan = uniform.source_and_plan(i)
        ep = uniform.episode(i)
        assert all(torch.equal(a, b) for a, b in zip(ep, sources[k].make(plan)))
        assert ep.classes.max() < sources[k].data.num_classes
    again = MultiSourceSampler([VariableEpisodeSampler(varied, seed=99), VariableEpisodeSampler(small)], seed=4)
    assert torch.equal(again.episode(5).query_x, uniform.episode(5).query_x)  # the sources' own seeds unused
