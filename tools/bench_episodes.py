"""Meta-Dataset episode throughput (variable way and shot) on a generated 84x84 cache.

    python tools/bench_episodes.py [--classes 50] [--per-class 200] [--size 84] [--episodes 60]
                                   [--workers 2]

Writes a train split of ``--classes`` x ``--per-class`` synthetic smooth images (tools/bench_data.py's)
and prints episodes/s and images/s (support + query, as the episodes hold them) of
:class:`metahyper.data.variable_episodes.VariableEpisodeSampler` with Meta-Dataset's rules, then of
5-way 1-shot 15-query episodes for reference, read:

* HDF5 cold: a freshly opened split, the cache file's pages first dropped from the page cache
  (``posix_fadvise DONTNEED`` on that file only), no warm-up;
* HDF5 warm: the same episodes again;
* RAM: ``in_memory=True``;
* HDF5 warm with ``--workers`` DataLoader workers (:func:`metahyper.data.meta_batches`, batches of 4).

One torch thread per process. The 0-worker rows also give images per CPU-second of this process,
which other jobs on the machine do not change.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metahyper.data import meta_batches, open_split
from metahyper.data.variable_episodes import VariableEpisodeSampler
from metahyper.data.writing import write_split

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import synthetic  # noqa: E402


def write_cache(root: Path, classes: int, per_class: int, size: int) -> Path:
    """A miniimagenet-layout train split of synthetic images; class ``c`` holds ``per_class``
    images scaled by 0.5 .. 1.5 across classes, so that shots vary with class size."""
    rng = np.random.default_rng(0)
    names = [f"n{c:08d}" for c in range(classes)]
    counts = np.linspace(0.5 * per_class, 1.5 * per_class, classes).astype(int)
    write_split(root, "miniimagenet", "train", {n: synthetic(rng, k, size) for n, k in zip(names, counts)}, names)
    return root / "miniimagenet" / "train_data.hdf5"


def drop_from_page_cache(path: Path) -> None:
    """Evict ``path``'s pages from the page cache (this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(episodes) -> tuple[int, int, float, float]:
    """``(episodes, images, wall s, CPU s)`` of consuming ``episodes`` (each dropped when made)."""
    n = images = 0
    t, c = time.perf_counter(), time.process_time()
    for ep in episodes:
        n += 1
        images += ep.support_x.shape[0] + ep.query_x.shape[0]
    return n, images, time.perf_counter() - t, time.process_time() - c


def report(task: str, reader: str, workers: int, result: tuple[int, int, float, float]) -> dict:
    """Print one table row; return it as a dict."""
    n, images, wall, cpu = result
    per_cpu = f"{images / cpu:>14,.0f}" if workers == 0 else f"{'-':>14}"
    print(f"{task:<26}{reader:<12}{workers:>8}{n / wall:>12.1f}{images / wall:>12,.0f}{per_cpu}{images / n:>10.0f}")
    return {"task": task, "reader": reader, "workers": workers, "episodes": n, "images": images}


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; the rows printed, as dicts."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--size", type=int, default=84)
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_cache(root, args.classes, args.per_class, args.size)
        print(
            f"cache: {args.classes} classes, {args.size}x{args.size}, {path.stat().st_size / 2**20:.0f} MiB; "
            "torch threads 1"
        )
        print(
            f"{'task':<26}{'reader':<12}{'workers':>8}{'episodes/s':>12}{'images/s':>12}{'images/CPU-s':>14}{'img/ep':>10}"
        )
        rows = []
        shapes = {"Meta-Dataset (variable)": {}, "5-way 1-shot 15-query": {"ways": 5, "shots": 1, "queries": 15}}
        for task, shape in shapes.items():
            count = args.episodes if not shape else args.episodes * 10
            drop_from_page_cache(path)
            sampler = VariableEpisodeSampler(open_split("miniimagenet", "train", root=root), seed=0, **shape)
            rows.append(report(task, "HDF5 cold", 0, timed(sampler.episode(i) for i in range(count))))
            rows.append(report(task, "HDF5 warm", 0, timed(sampler.episode(i) for i in range(count))))
            ram = VariableEpisodeSampler(
                open_split("miniimagenet", "train", root=root, in_memory=True), seed=0, **shape
            )
            rows.append(report(task, "RAM", 0, timed(ram.episode(i) for i in range(count))))
            if args.workers:
                loader = meta_batches(
                    sampler, 4, num_batches=count // 4 + 2, num_workers=args.workers, prefetch_factor=2
                )
                it = iter(loader)
                next(it), next(it)  # workers started and running
                result = timed(ep for _ in range(count // 4) for ep in next(it))
                rows.append(report(task, "HDF5 warm", args.workers, result))
                del it, loader
    return rows


if __name__ == "__main__":
    main()
