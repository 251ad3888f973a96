"""Episode sampler and meta-batches: disjointness, label remap, determinism, errors."""

from __future__ import annotations

import pytest
import torch

from metahyper.data import EpisodeSampler, meta_batches, open_split, to_tensor
from metahyper.errors import UserError


def _tags(sampler: EpisodeSampler, i: int):
    classes, images = sampler.draw(i)
    raw = sampler.data.read_many(classes, images)
    return classes, images, raw[..., 0, 0, 0], raw[..., 0, 0, 1]


def test_episode_shapes_labels_disjoint(tagged_root):
    data = open_split("miniimagenet", "train", root=tagged_root)
    s = EpisodeSampler(data, ways=5, shots=2, queries=3, seed=1, image_size=12)
    ep = s.episode(0)
    assert ep.support_x.shape == (10, 3, 12, 12) and ep.query_x.shape == (15, 3, 12, 12)
    assert ep.support_x.dtype == torch.float32
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert ep.query_y.tolist() == sorted([0, 1, 2, 3, 4] * 3)
    orders = set()
    for i in range(30):
        classes, images, cls_tag, idx_tag = _tags(s, i)
        assert len(set(classes.tolist())) == 5
        assert (cls_tag == classes[:, None]).all()  # row n of the episode = class classes[n]
        for row in idx_tag:  # support and query images of a class are distinct
            assert len(set(row.tolist())) == 5
        orders.add(tuple(classes.tolist()))
    assert len(orders) == 30  # random classes in random label order
    classes, images = s.draw(0)  # tensors are the normalised images the draw names
    raw = data.read_many(classes, images)
    x = to_tensor(raw.reshape(-1, 8, 8, 3), *s.normalization, size=12).view(5, 5, 3, 12, 12)
    torch.testing.assert_close(ep.support_x, x[:, :2].reshape(-1, 3, 12, 12))
    torch.testing.assert_close(ep.query_x, x[:, 2:].reshape(-1, 3, 12, 12))
    assert ep.classes.tolist() == classes.tolist()


def test_deterministic_across_runs_ram_and_workers(tagged_root):
    data = open_split("miniimagenet", "train", root=tagged_root)
    s = EpisodeSampler(data, ways=3, shots=1, queries=2, seed=7)
    again = EpisodeSampler(open_split("miniimagenet", "train", root=tagged_root, in_memory=True), 3, 1, 2, seed=7)
    other_seed = EpisodeSampler(data, 3, 1, 2, seed=8)
    for i in (0, 5, 123456):
        a, b = s.episode(i), again.episode(i)
        for t, u in zip(a, b):
            assert torch.equal(t, u)
    assert not torch.equal(s.episode(0).support_x, other_seed.episode(0).support_x)
    serial = [b for b in meta_batches(s, batch_size=4, start=3, num_batches=3)]
    parallel = [b for b in meta_batches(s, batch_size=4, start=3, num_batches=3, num_workers=2)]
    assert len(serial) == len(parallel) == 3
    for j, (mb0, mb1) in enumerate(zip(serial, parallel)):
        assert len(mb0) == 4
        for b, (e0, e1) in enumerate(zip(mb0, mb1)):
            ref = s.episode((3 + j) * 4 + b)  # meta-batch j = episodes j*B .. j*B+B-1
            assert all(torch.equal(t, u) for t, u in zip(e0, e1)) and torch.equal(e0.query_x, ref.query_x)
    shards = [next(iter(meta_batches(s, 4, start=3, num_batches=1, rank=r, world_size=2))) for r in (0, 1)]
    assert [e.classes.tolist() for e in shards[0] + shards[1]] == [
        e.classes.tolist() for e in [serial[0][0], serial[0][2], serial[0][1], serial[0][3]]
    ]


def test_errors(tagged_root):
    data = open_split("miniimagenet", "val", root=tagged_root)
    with pytest.raises(UserError, match="5-way|need 6 classes") as err:
        EpisodeSampler(data, ways=6, shots=1, queries=1)
    assert "has 5" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="need 31 images per class but miniimagenet val has only 30"):
        EpisodeSampler(data, ways=5, shots=16, queries=15)
    EpisodeSampler(data, ways=5, shots=15, queries=15)  # exactly enough
