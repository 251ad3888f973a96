"""Episode sampler throughput on a generated cache in each dataset's layout and storage.

    python tools/bench_data.py [--dataset miniimagenet|tieredimagenet|cub|omniglot|cifar-fs]
                               [--storage decoded|encoded] [--classes 20] [--per-class 600]
                               [--episodes 300] [--quick]
    python tools/bench_data.py --make-tiered-source DIR [--images 20000]

Prints episodes/s for 5-way 1-shot 15-query and 5-way 5-shot 15-query, from HDF5 and from RAM,
with 0 and 2 DataLoader workers, next to a naive reader (one h5py read + one tensor conversion per
image, decoded RGB caches only) in the same run; ``--quick``: 1-shot from HDF5 with 0 workers only.
Images are 84x84 (tieredimagenet, cub, miniimagenet), 28x28 grayscale (omniglot) or 32x32
(cifar-fs). ``--storage encoded`` writes torchmeta's form (PNG bytes for tieredimagenet, JPEG bytes
for cub), decoded at read time. The synthetic images are smooth fields plus noise, so that PNG and
JPEG sizes are of the order of natural images', not of noise.

``--make-tiered-source DIR`` writes a release-format tieredImageNet source (``{split}_images_png.pkl``
+ ``{split}_labels.pkl``, ``--images`` images split 60/20/20 over Ren et al.'s class counts) for
measuring ``metahyper prepare tieredimagenet --strict``-free builds, e.g. peak memory with
``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from metahyper.data import EpisodeSampler, meta_batches, open_split
from metahyper.data.sources.tieredimagenet import CLASSES, shipped_classes
from metahyper.data.storage import write_encoded_split
from metahyper.data.writing import write_split

SIZES = {"miniimagenet": 84, "tieredimagenet": 84, "cub": 84, "omniglot": 28, "cifar-fs": 32}
ENCODING = {"tieredimagenet": "PNG", "cub": "JPEG"}


def synthetic(rng: np.random.Generator, n: int, size: int, gray: bool = False) -> np.ndarray:
    """``n`` smooth random images (a bilinear-upsampled 6x6 field plus noise), uint8."""
    channels = 1 if gray else 3
    fields = rng.integers(0, 256, (n, 6, 6, channels), dtype=np.uint8)
    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(fields[i].squeeze(-1) if gray else fields[i]).resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.int16).reshape(size, size, channels) + rng.integers(
            -8, 9, (size, size, channels)
        )
        out[i] = np.clip(arr, 0, 255)
    return out[..., 0] if gray else out


def encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_cache(root: Path, dataset: str, storage: str, classes: int, per_class: int) -> Path:
    """A train split of ``classes`` x ``per_class`` synthetic images in ``dataset``'s layout."""
    rng = np.random.default_rng(0)
    size = SIZES[dataset]
    if dataset == "omniglot":
        (root / "omniglot").mkdir()
        with h5py.File(root / "omniglot" / "data.hdf5", "w") as f:
            labels = [["images_background", "A", f"character{c:02d}"] for c in range(classes)]
            for key in labels:
                f.create_dataset("/".join(key), data=synthetic(rng, per_class, size, gray=True))
        (root / "omniglot" / "vinyals_train_labels.json").write_text(json.dumps(labels))
        return root / "omniglot" / "data.hdf5"
    if dataset == "cifar-fs":
        (root / "cifar100" / "cifar-fs").mkdir(parents=True)
        with h5py.File(root / "cifar100" / "data.hdf5", "w") as f:
            labels = [["coarse", f"fine{c}"] for c in range(classes)]
            for key in labels:
                f.create_dataset("/".join(key), data=synthetic(rng, per_class, size))
        (root / "cifar100" / "cifar-fs" / "train_labels.json").write_text(json.dumps(labels))
        return root / "cifar100" / "data.hdf5"
    names = [f"n{c:08d}" for c in range(classes)]
    images = {name: synthetic(rng, per_class, size) for name in names}
    if storage == "encoded":
        blobs = {name: [encode(im, ENCODING[dataset]) for im in arr] for name, arr in images.items()}
        write_encoded_split(root, dataset, "train", blobs, names)
    else:
        write_split(root, dataset, "train", images, names)
    return root / dataset / "train_data.hdf5"


def make_tiered_source(folder: Path, images: int) -> None:
    """Ren et al.'s release format with ``images`` synthetic PNGs (protocol 2 pickles)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        pairs = shipped_classes(split) or {f"n0999{c:04d}": f"n0998{c % 8:04d}" for c in range(CLASSES["test"])}
        names, generals = list(pairs), sorted(set(pairs.values()))
        n = int(images * share)
        specific = np.sort(np.arange(n) % len(names))  # the release lists images class by class
        labels = {
            "label_specific": specific,
            "label_general": np.array([generals.index(pairs[names[c]]) for c in specific]),
            "label_specific_str": names,
            "label_general_str": generals,
        }
        (folder / f"{split}_labels.pkl").write_bytes(pickle.dumps(labels, protocol=2))
        with open(folder / f"{split}_images_png.pkl", "wb") as f:
            blobs = []
            for start in range(0, n, 1000):
                batch = synthetic(rng, min(1000, n - start), 84)
                blobs += [np.frombuffer(encode(im, "PNG"), np.uint8).reshape(-1, 1) for im in batch]
            pickle.dump(blobs, f, protocol=2)
        print(f"{split}: {n} images, {len(names)} classes")


def naive_episode(sampler: EpisodeSampler, index: int) -> list[torch.Tensor]:
    """Per-image reads from HDF5 and per-image conversion: the baseline (decoded RGB caches)."""
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
    ap.add_argument("--dataset", choices=sorted(SIZES), default="miniimagenet")
    ap.add_argument("--storage", choices=("decoded", "encoded"), default="decoded")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--batch", type=int, default=4, help="meta-batch size for the DataLoader runs")
    ap.add_argument("--quick", action="store_true", help="5-way 1-shot from HDF5 with 0 workers only")
    ap.add_argument("--make-tiered-source", type=Path, metavar="DIR")
    ap.add_argument("--images", type=int, default=20000)
    args = ap.parse_args()
    if args.make_tiered_source:
        make_tiered_source(args.make_tiered_source, args.images)
        return
    if args.storage == "encoded" and args.dataset not in ENCODING:
        ap.error(f"--storage encoded: torchmeta encodes only {', '.join(ENCODING)}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_cache(root, args.dataset, args.storage, args.classes, args.per_class)
        data = open_split(args.dataset, "train", root=root)
        print(
            f"cache: {args.dataset} ({data.storage}), {args.classes} classes x {args.per_class} images, "
            f"{'x'.join(map(str, data.image_size))}, {path.stat().st_size / 2**20:.1f} MiB; torch threads 1"
        )
        print(f"{'task':<22}{'reader':<24}{'workers':>8}{'episodes/s':>12}{'per CPU-s':>11}")
        for shots in (1,) if args.quick else (1, 5):
            task = f"5-way {shots}-shot 15-query"
            for reader, in_memory in (("HDF5", False),) if args.quick else (("HDF5", False), ("RAM", True)):
                data = open_split(args.dataset, "train", root=root, in_memory=in_memory)
                sampler = EpisodeSampler(data, 5, shots, 15, seed=0)
                r, cpu = rate(lambda n, sampler=sampler: consume(sampler.episode(i) for i in range(n)), args.episodes)
                print(f"{task:<22}{reader:<24}{0:>8}{r:>12.0f}{cpu:>11.0f}")
                if args.quick:
                    continue
                batches = args.episodes // args.batch
                loader = meta_batches(sampler, args.batch, num_batches=batches + 4, num_workers=2, prefetch_factor=4)
                it = iter(loader)

                def run(n, it=it):
                    for _ in range(-(-n // args.batch)):
                        next(it)

                r, _ = rate(run, batches * args.batch)
                print(f"{task:<22}{reader:<24}{2:>8}{r:>12.0f}{'-':>11}")
                del it, loader
            if args.quick or data.storage != "rgb":
                continue
            data = open_split(args.dataset, "train", root=root)
            sampler = EpisodeSampler(data, 5, shots, 15, seed=0)
            n = max(20, args.episodes // 10)
            r, cpu = rate(lambda k, sampler=sampler: consume(naive_episode(sampler, i) for i in range(k)), n)
            print(f"{task:<22}{'naive per-image HDF5':<24}{0:>8}{r:>12.0f}{cpu:>11.0f}")


if __name__ == "__main__":
    main()
