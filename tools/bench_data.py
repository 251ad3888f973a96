"""Episode sampler throughput on a generated 84x84 MiniImageNet-layout cache.

    python tools/bench_data.py [--classes 20] [--per-class 600] [--episodes 300]

Prints episodes/s for 5-way 1-shot 15-query and 5-way 5-shot 15-query, from HDF5 and from RAM,
with 0 and 2 DataLoader workers, next to a naive reader (one h5py read + one tensor conversion per
image) in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metahyper.data import EpisodeSampler, meta_batches, open_split
from metahyper.data.cache import write_split


def naive_episode(sampler: EpisodeSampler, index: int) -> list[torch.Tensor]:
    """Per-image reads from HDF5 and per-image conversion: the baseline."""
    classes, images = sampler.draw(index)
    mean = torch.tensor(sampler.normalization[0]).view(3, 1, 1)
    std = torch.tensor(sampler.normalization[1]).view(3, 1, 1)
    out = []
    for c, row in zip(classes, images):
        ds = sampler.data._dataset(sampler.data._keys[c])
        for i in row:
            x = torch.from_numpy(ds[int(i)]).permute(2, 0, 1).float() / 255
            out.append((x - mean) / std)
    return out


def consume(items) -> None:
    """Drop each episode as soon as it is made, as a training loop does (keeping them all would
    time page faults of gigabytes of fresh memory, not the sampler)."""
    for _ in items:
        pass


def rate(fn, count: int) -> tuple[float, float]:
    """Episodes per wall-clock second, and per CPU second of this process (0-worker runs: the
    throughput an unloaded core gives, robust to other jobs sharing the machine)."""
    fn(min(count, 10))  # warm-up (file open, worker start, first touch of the pages)
    t, c = time.perf_counter(), time.process_time()
    fn(count)
    return count / (time.perf_counter() - t), count / max(time.process_time() - c, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4, help="meta-batch size for the DataLoader runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        classes = {f"n{c:08d}": rng.integers(0, 256, (args.per_class, 84, 84, 3), dtype=np.uint8) for c in range(args.classes)}
        write_split(root, "miniimagenet", "train", classes, sorted(classes))
        del classes
        print(f"cache: {args.classes} classes x {args.per_class} images, 84x84x3 uint8; torch threads 1")
        print(f"{'task':<22}{'reader':<24}{'workers':>8}{'episodes/s':>12}{'per CPU-s':>11}")
        for shots in (1, 5):
            task = f"5-way {shots}-shot 15-query"
            for reader, in_memory in (("HDF5", False), ("RAM", True)):
                data = open_split("miniimagenet", "train", root=root, in_memory=in_memory)
                if in_memory:
                    data.load_into_memory()  # loading the split is set-up, not sampling
                sampler = EpisodeSampler(data, 5, shots, 15, seed=0)
                r, cpu = rate(lambda n: consume(sampler.episode(i) for i in range(n)), args.episodes)
                print(f"{task:<22}{reader:<24}{0:>8}{r:>12.0f}{cpu:>11.0f}")
                batches = args.episodes // args.batch
                loader = meta_batches(sampler, args.batch, num_batches=batches + 4, num_workers=2, prefetch_factor=4)
                it = iter(loader)

                def run(n, it=it):
                    for _ in range(-(-n // args.batch)):
                        next(it)

                r, _ = rate(run, batches * args.batch)
                print(f"{task:<22}{reader:<24}{2:>8}{r:>12.0f}{'-':>11}")
                del it, loader
            data = open_split("miniimagenet", "train", root=root)
            sampler = EpisodeSampler(data, 5, shots, 15, seed=0)
            n = max(20, args.episodes // 10)
            r, cpu = rate(lambda k: consume(naive_episode(sampler, i) for i in range(k)), n)
            print(f"{task:<22}{'naive per-image HDF5':<24}{0:>8}{r:>12.0f}{cpu:>11.0f}")


if __name__ == "__main__":
    main()
