"""N-way K-shot episode sampler and meta-batches (paper section 4, Algorithm 2's task batches).

``EpisodeSampler(data, ways, shots, queries, seed)`` is a map-style torch Dataset:
``sampler[i]`` / ``sampler.episode(i)`` is an :class:`Episode` with ``support_x`` float
(N*K, 3, S, S), ``support_y`` long (N*K,), ``query_x`` (N*Q, 3, S, S), ``query_y`` (N*Q,), rows in
class-major order (labels 0..N-1 assigned in random class order). Episode ``i`` of seed ``s`` draws
from a numpy PCG64 generator seeded with ``SeedSequence([s, i])``, so it is the same on every
run, machine and number of DataLoader workers.

``meta_batches(sampler, batch_size, start=j0)`` yields lists of ``batch_size`` episodes; meta-batch
``j`` holds episodes ``j*B .. j*B+B-1``, so resuming at iteration ``j0`` replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from metahyper.data.cache import SplitData
from metahyper.data.transforms import to_tensor
from metahyper.errors import UserError


class Episode(NamedTuple):
    """One few-shot task. ``classes`` holds the split's class indices behind labels 0..N-1."""

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    classes: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Episode:
        return Episode(*(t.to(device, non_blocking=non_blocking) for t in self))


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of episode ``index`` for ``seed``: stable across runs, machines and workers."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))


class EpisodeSampler(Dataset):
    """N-way, K-shot, Q-query tasks drawn from one split (support and query images disjoint).

    Args:
        data: the split (:func:`metahyper.data.open_split`); ``in_memory=True`` is fastest.
        ways, shots, queries: N, K and Q (queries per class).
        seed: episode ``i`` depends only on ``(seed, i)``.
        image_size: resize every image to this size (cross-domain runs); None keeps the cache's.
        normalization: ``(mean, std)``; default the dataset's own (``data.normalization``).
        transform: optional callable applied to each normalised float batch (support, then query).
        length: ``len(sampler)`` (number of episodes a DataLoader iterates over).
    """

    def __init__(
        self,
        data: SplitData,
        ways: int,
        shots: int,
        queries: int,
        seed: int = 0,
        image_size: int | None = None,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        length: int = 10**9,
    ) -> None:
        if ways < 1 or shots < 1 or queries < 0:
            raise UserError(
                f"invalid episode shape ways={ways} shots={shots} queries={queries}; use ways, shots >= 1, queries >= 0"
            )
        if ways > data.num_classes:
            raise UserError(
                f"{ways}-way episodes need {ways} classes but {data.name} {data.split} has {data.num_classes}; "
                f"use --ways {data.num_classes} or fewer"
            )
        fewest = min(data.images_per_class(c) for c in range(data.num_classes))
        if shots + queries > fewest:
            raise UserError(
                f"{shots} shots + {queries} queries need {shots + queries} images per class but {data.name} "
                f"{data.split} has only {fewest} for some classes; lower --shots/--queries"
            )
        self.data = data
        self.ways, self.shots, self.queries = ways, shots, queries
        self.seed = seed
        self.image_size = image_size
        self.normalization = normalization if normalization is not None else data.normalization
        self.transform = transform
        self.length = length
        self._counts = np.array([data.images_per_class(c) for c in range(data.num_classes)])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        return self.episode(index)

    def draw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Class indices (N,) in label order and image indices (N, K+Q) of episode ``index``."""
        return self.draw_from(episode_rng(self.seed, index))

    def draw_from(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`draw` from the generator ``rng`` (advanced by the draw)."""
        classes = rng.choice(self.data.num_classes, size=self.ways, replace=False)
        per_class = self.shots + self.queries
        counts = self._counts[classes]
        if np.all(counts == counts[0]):  # one vectorised draw: argsort of uniforms = random permutation
            images = np.argsort(rng.random((self.ways, counts[0])), axis=1)[:, :per_class]
        else:
            images = np.stack([rng.choice(n, size=per_class, replace=False) for n in counts])
        return classes, images

    def episode(self, index: int) -> Episode:
        classes, images = self.draw(index)
        raw = self.data.read_many(classes, images)  # (N, K+Q, H, W, 3) uint8
        h, w = raw.shape[2:4]
        n_support = self.ways * self.shots  # support rows first, so both halves are contiguous views
        raw = np.concatenate([raw[:, : self.shots].reshape(-1, h, w, 3), raw[:, self.shots :].reshape(-1, h, w, 3)])
        x = to_tensor(raw, *self.normalization, size=self.image_size)
        support_x, query_x = x[:n_support], x[n_support:]
        if self.transform is not None:
            support_x, query_x = self.transform(support_x), self.transform(query_x)
        labels = torch.arange(self.ways)
        return Episode(
            support_x,
            labels.repeat_interleave(self.shots),
            query_x,
            labels.repeat_interleave(self.queries),
            torch.as_tensor(classes, dtype=torch.long),
        )

    def __iter__(self) -> Iterator[Episode]:
        for i in range(self.length):
            yield self.episode(i)


class EpisodeSource(Protocol):
    """What :func:`meta_batches` takes: episode ``i`` depends only on ``i`` (and the source's seed)."""

    def __len__(self) -> int: ...

    def episode(self, index: int) -> Episode: ...


class _MetaBatches(Dataset):
    """Item ``j`` = episodes ``(start + j) * B + b`` for b < B (``rank::world_size`` of them when sharded)."""

    def __init__(self, sampler: EpisodeSource, batch_size: int, start: int, count: int, rank: int, world_size: int):
        self.sampler, self.batch_size, self.start, self.count = sampler, batch_size, start, count
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, j: int) -> list[Episode]:
        first = (self.start + j) * self.batch_size
        return [self.sampler.episode(first + b) for b in range(self.rank, self.batch_size, self.world_size)]


def _as_list(batch: list[Episode]) -> list[Episode]:
    return batch


def meta_batches(
    sampler: EpisodeSource,
    batch_size: int,
    start: int = 0,
    num_batches: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """DataLoader of meta-batches (lists of :class:`Episode`) from iteration ``start`` on.

    Meta-batch ``j`` (the ``j - start``-th item) is episodes ``j*B .. j*B+B-1`` whatever
    ``num_workers`` is; with ``world_size > 1`` each rank gets episodes ``rank::world_size`` of it.
    ``num_batches`` defaults to every remaining batch of ``len(sampler)``.
    """
    if num_batches is None:
        num_batches = max(0, len(sampler) // batch_size - start)
    dataset = _MetaBatches(sampler, batch_size, start, num_batches, rank, world_size)
    extra = {"prefetch_factor": prefetch_factor} if (num_workers > 0 and prefetch_factor) else {}
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_as_list,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        **extra,
    )
