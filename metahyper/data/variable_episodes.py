"""Meta-Dataset's variable-way variable-shot episodes (Triantafillou et al. 2020, section 3.2 and
appendix; the defaults of its ``EpisodeDescriptionSampler``).

Episode ``i`` of seed ``s`` draws from ``SeedSequence([s, i])`` (:func:`episode_rng`), as
:class:`~metahyper.data.episodes.EpisodeSampler` does, so it is the same on every run, machine and
number of DataLoader workers. With ``c_1..c_N`` the chosen classes and ``|c|`` their image counts:

1. **Ways.** ``N ~ U{5, ..., min(50, classes in the split)}``, classes uniform without replacement.
   With :class:`~metahyper.data.class_groups.ClassGroups` (ILSVRC, Omniglot) the classes come from
   one group instead: ILSVRC takes the leaves spanned by a uniformly drawn WordNet node (one spanning
   5 to 392 leaves), 50 of them drawn uniformly when it spans more; Omniglot draws an alphabet
   uniformly, then ``N ~ U{5, ..., min(50, its characters)}`` of its characters.
2. **Queries per class.** ``Q = min(10, min_n floor(|c_n| / 2))``.
3. **Support set size.** ``beta ~ U(0, 1)``, ``|S| = min(500, sum_n floor(beta * min(100, |c_n| - Q) + 1))``
   (Meta-Dataset's code; the paper writes it ``ceil(beta * ...)`` with ``beta`` in (0, 1]).
4. **Shots per class.** ``a_n ~ U(log 0.5, log 2)``, ``w_n = |c_n| exp(a_n) / sum_m |c_m| exp(a_m)``,
   ``K_n = min(floor(w_n (|S| - N)) + 1, |c_n| - Q)``: proportional to class size, at least 1.
5. Each class's images are drawn without replacement: ``K_n`` support, then ``Q`` query.

Overrides: ``ways`` fixes N (classes then uniform over the whole split, groups unused, as
Meta-Dataset refuses a fixed way with its hierarchies); ``shots`` fixes every ``K_n`` (then
``Q = min(10, min_n (|c_n| - K))``); ``queries`` fixes Q. All three give exactly
:class:`~metahyper.data.episodes.EpisodeSampler`'s episodes (5-way 1-shot stays one flag away).

Episodes of a meta-batch differ in size and are **not padded**: :func:`meta_batches` yields lists
of :class:`Episode`, and the learner adapts to them one by one (MAML's backends ``func`` and
``higher``; ``vmap`` stacks tasks and refuses unequal shapes in one line). Padding to the largest
episode (up to 500 support and 500 query images) would multiply the compute of small episodes
and need masks in every loss, accuracy and transductive BatchNorm statistic.

:class:`MultiSourceSampler` draws each episode's source (uniformly, or in proportion to its images)
and then the episode, from one generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from metahyper.data.cache import SplitData
from metahyper.data.class_groups import ClassGroups, class_groups
from metahyper.data.episodes import Episode, EpisodeSampler, episode_rng
from metahyper.data.transforms import to_tensor
from metahyper.errors import UserError

MIN_WAYS = 5
MAX_WAYS = 50
MAX_QUERY = 10
MAX_SUPPORT = 500
MAX_SUPPORT_PER_CLASS = 100
LOG_WEIGHT_RANGE = (math.log(0.5), math.log(2.0))


class EpisodePlan(NamedTuple):
    """What an episode holds: ``classes`` (N,) in label order, ``shots`` (N,), ``queries`` Q, and
    ``images[n]``: class ``classes[n]``'s ``shots[n]`` support then Q query image indices."""

    classes: np.ndarray
    shots: np.ndarray
    queries: int
    images: tuple[np.ndarray, ...]


def query_count(counts: np.ndarray, shots: int | None = None) -> int:
    """Queries per class for classes of ``counts`` images: ``min(10, min(counts) // 2)``, or with a
    fixed ``shots``, ``min(10, min(counts - shots))``."""
    if shots is None:
        return int(min(MAX_QUERY, counts.min() // 2))
    return int(min(MAX_QUERY, (counts - shots).min()))


def support_set_size(left: np.ndarray, beta: float) -> int:
    """``min(500, sum floor(beta * min(100, left) + 1))`` for ``left`` images per class after the queries."""
    return int(min(np.floor(beta * np.minimum(MAX_SUPPORT_PER_CLASS, left) + 1).sum(), MAX_SUPPORT))


def support_shots(counts: np.ndarray, left: np.ndarray, size: int, log_weights: np.ndarray) -> np.ndarray:
    """Shots per class: ``min(floor(w * (size - N)) + 1, left)`` with ``w`` the normalised
    ``counts * exp(log_weights)``."""
    weights = counts * np.exp(log_weights)
    shots = np.floor(weights / weights.sum() * (size - len(counts))).astype(np.int64) + 1
    return np.minimum(shots, left)


class VariableEpisodeSampler(Dataset):
    """Meta-Dataset's episodes from one split (the rules: this module's docstring).

    Args:
        data: the split (:func:`metahyper.data.open_split`).
        ways, shots, queries: fixed N, K, Q; None (default) draws each by Meta-Dataset's rules.
        seed: episode ``i`` depends only on ``(seed, i)``.
        groups: how variable ways draw classes: ``"auto"`` (default) the dataset's own groups
            (:func:`metahyper.data.class_groups.class_groups`: ILSVRC's WordNet nodes, Omniglot's
            alphabets, else none), a :class:`ClassGroups`, or None: uniformly from the whole split.
        image_size, normalization, transform, length: as :class:`EpisodeSampler`'s.

    Shapes that some episode could not fill are refused in one line at construction.
    """

    def __init__(
        self,
        data: SplitData,
        ways: int | None = None,
        shots: int | None = None,
        queries: int | None = None,
        seed: int = 0,
        groups: ClassGroups | str | None = "auto",
        image_size: int | None = None,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        length: int = 10**9,
    ) -> None:
        self.data, self.seed, self.length = data, seed, length
        self.ways, self.shots, self.queries = ways, shots, queries
        self.image_size, self.transform = image_size, transform
        self.normalization = normalization if normalization is not None else data.normalization
        self._counts = np.array([data.images_per_class(c) for c in range(data.num_classes)], dtype=np.int64)
        self._fixed = None
        if ways is not None and shots is not None and queries is not None:
            self._fixed = EpisodeSampler(data, ways, shots, queries, seed, image_size, normalization, transform, length)
            return
        self._check_shape()
        if isinstance(groups, str):
            if groups != "auto":
                raise UserError(f"class groups must be 'auto', None or ClassGroups, got {groups!r}")
            groups = class_groups(data) if ways is None else None
        self._kind = groups.kind if groups is not None and ways is None else None
        self._groups = groups.eligible(MIN_WAYS) if self._kind is not None else ()
        if self._kind is not None and not self._groups:
            raise UserError(
                f"{data.name} {data.split} has no class group of {MIN_WAYS} or more classes for variable-way "
                f"episodes; pass --ways"
            )

    def _check_shape(self) -> None:
        """A one-line :class:`UserError` when the overrides or the split cannot make every episode."""
        name, n, fewest = f"{self.data.name} {self.data.split}", self.data.num_classes, int(self._counts.min())
        ways, shots, queries = self.ways, self.shots, self.queries
        if (
            (ways is not None and ways < 1)
            or (shots is not None and shots < 1)
            or (queries is not None and queries < 0)
        ):
            raise UserError(
                f"invalid episode shape ways={ways} shots={shots} queries={queries}; use ways, shots >= 1, queries >= 0"
            )
        if ways is None and n < MIN_WAYS:
            raise UserError(
                f"variable-way episodes need {MIN_WAYS} classes but {name} has {n}; pass --ways {n} or fewer"
            )
        if ways is not None and ways > n:
            raise UserError(f"{ways}-way episodes need {ways} classes but {name} has {n}; use --ways {n} or fewer")
        if shots is None and ways is not None and ways > MAX_SUPPORT:
            raise UserError(
                f"{ways}-way episodes exceed the {MAX_SUPPORT}-image support set; pass --shots or fewer --ways"
            )
        need = (shots or 1) + (1 if queries is None else queries)  # a drawn count is at least 1
        if need > fewest:
            raise UserError(
                f"these episodes need {need} images per class (shots={shots}, queries={queries}) but {name} has only "
                f"{fewest} for some classes; lower --shots/--queries"
            )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        return self.episode(index)

    def plan(self, index: int) -> EpisodePlan:
        """The :class:`EpisodePlan` of episode ``index``."""
        return self.plan_from(episode_rng(self.seed, index))

    def plan_from(self, rng: np.random.Generator) -> EpisodePlan:
        """An :class:`EpisodePlan` drawn from ``rng`` (advanced by the draw)."""
        if self._fixed is not None:
            classes, images = self._fixed.draw_from(rng)
            return EpisodePlan(classes, np.full(len(classes), self.shots), self.queries, tuple(images))
        classes = self._classes(rng)
        counts = self._counts[classes]
        queries = self.queries if self.queries is not None else query_count(counts, self.shots)
        left = counts - queries
        if self.shots is not None:
            shots = np.full(len(classes), self.shots, dtype=np.int64)
        else:
            size = support_set_size(left, rng.uniform())
            shots = support_shots(counts, left, size, rng.uniform(*LOG_WEIGHT_RANGE, size=len(classes)))
        images = tuple(rng.choice(n, size=k + queries, replace=False) for n, k in zip(counts, shots))
        return EpisodePlan(classes, shots, queries, images)

    def _classes(self, rng: np.random.Generator) -> np.ndarray:
        """The episode's class indices in label order."""
        if self.ways is not None:
            return rng.choice(self.data.num_classes, size=self.ways, replace=False)
        if self._kind is None:
            ways = rng.integers(MIN_WAYS, min(MAX_WAYS, self.data.num_classes) + 1)
            return rng.choice(self.data.num_classes, size=ways, replace=False)
        group = self._groups[rng.integers(len(self._groups))]
        if self._kind == "dag":
            ways = min(MAX_WAYS, len(group))
        else:
            ways = rng.integers(MIN_WAYS, min(MAX_WAYS, len(group)) + 1)
        return rng.choice(group, size=ways, replace=False)

    def make(self, plan: EpisodePlan) -> Episode:
        """The :class:`Episode` of ``plan``: support rows then query rows, each class-major."""
        rows = [self.data.read(c, images) for c, images in zip(plan.classes, plan.images)]
        raw = np.concatenate([r[:k] for r, k in zip(rows, plan.shots)] + [r[k:] for r, k in zip(rows, plan.shots)])
        x = to_tensor(raw, *self.normalization, size=self.image_size)
        n_support = int(plan.shots.sum())
        support_x, query_x = x[:n_support], x[n_support:]
        if self.transform is not None:
            support_x, query_x = self.transform(support_x), self.transform(query_x)
        labels = torch.arange(len(plan.classes))
        return Episode(
            support_x,
            labels.repeat_interleave(torch.as_tensor(plan.shots)),
            query_x,
            labels.repeat_interleave(plan.queries),
            torch.as_tensor(plan.classes, dtype=torch.long),
        )

    def episode(self, index: int) -> Episode:
        if self._fixed is not None:
            return self._fixed.episode(index)
        return self.make(self.plan(index))

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the images the episodes hold."""
        return (self.image_size, self.image_size) if self.image_size is not None else self.data.image_size

    @property
    def num_images(self) -> int:
        """Images in the split."""
        return int(self._counts.sum())

    def largest_episode(self) -> tuple[int, int, int]:
        """Upper bounds of any episode's ``(ways, support images, query images)``, from the class
        counts alone (what a memory check is fed): ``N <= min(50, classes)``; the support set at most
        ``min(500, sum of min(100, |c|))`` over the N largest classes; ``n * Q`` queries, ``Q`` at most
        the rule's value for the n-th largest class (the smallest of n classes is no larger)."""
        if self._fixed is not None:
            return self.ways, self.ways * self.shots, self.ways * self.queries
        ways = self.ways if self.ways is not None else min(MAX_WAYS, self.data.num_classes)
        top = np.sort(self._counts)[::-1][:ways]
        if self.shots is not None:
            support = ways * self.shots
            per_class = np.minimum(MAX_QUERY, top - self.shots)
        else:
            support = int(min(MAX_SUPPORT, np.minimum(MAX_SUPPORT_PER_CLASS, top).sum()))
            per_class = np.minimum(MAX_QUERY, top // 2)
        if self.queries is not None:
            per_class = np.full(ways, self.queries)
        return ways, support, int((np.arange(1, ways + 1) * per_class).max())


class MultiSourceSampler(Dataset):
    """Episodes from several splits: episode ``i`` draws its source, then its episode from that
    source's sampler, from one generator seeded by ``(seed, i)`` (each sampler's own seed unused).

    Args:
        samplers: one :class:`VariableEpisodeSampler` per source; their images must have one size.
        seed: episode ``i`` depends only on ``(seed, i)``.
        weights: ``"uniform"`` (each source equally likely, Meta-Dataset's default) or ``"size"``
            (in proportion to each split's number of images).
        length: ``len(sampler)``.
    """

    def __init__(
        self, samplers: Sequence[VariableEpisodeSampler], seed: int = 0, weights: str = "uniform", length: int = 10**9
    ) -> None:
        if not samplers:
            raise UserError("multi-source episodes need at least one source; name one or more datasets")
        if weights not in ("uniform", "size"):
            raise UserError(f"source weights must be 'uniform' or 'size', got {weights!r}")
        sizes = {s.output_size for s in samplers}
        if len(sizes) > 1:
            raise UserError(
                f"the sources give images of different sizes {sorted(sizes)}; pass one --image-size for all"
            )
        self.samplers, self.seed, self.length = list(samplers), seed, length
        p = np.array([s.num_images if weights == "size" else 1 for s in samplers], dtype=np.float64)
        self.probabilities = p / p.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        return self.episode(index)

    def largest_episode(self) -> tuple[int, int, int]:
        """Upper bounds of any episode's ``(ways, support images, query images)``: the largest of
        each over the sources (:meth:`VariableEpisodeSampler.largest_episode`)."""
        bounds = np.array([s.largest_episode() for s in self.samplers])
        return tuple(int(b) for b in bounds.max(axis=0))

    def source_and_plan(self, index: int) -> tuple[int, EpisodePlan]:
        """The source (index into ``samplers``) and :class:`EpisodePlan` of episode ``index``."""
        rng = episode_rng(self.seed, index)
        k = int(rng.choice(len(self.samplers), p=self.probabilities))
        return k, self.samplers[k].plan_from(rng)

    def episode(self, index: int) -> Episode:
        k, plan = self.source_and_plan(index)
        return self.samplers[k].make(plan)
