"""FC100 and CIFAR-10/100 caches from the CIFAR "python version" archives (Krizhevsky 2009).

Source format: ``cifar-100-python.tar.gz`` (or its extracted ``cifar-100-python/`` folder) holding
pickles ``train``, ``test`` (dicts with bytes keys ``b'data'`` uint8 (N, 3072) = R, G, B planes of
32x32 row-major, ``b'fine_labels'``, ``b'coarse_labels'``, ``b'filenames'``) and ``meta``
(``b'fine_label_names'``, ``b'coarse_label_names'``); ``cifar-10-python.tar.gz`` holds
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (``b'labels'``, ``b'label_names'``).

* :func:`build_fc100`: train+test merged (600 images per fine class), TADAM's coarse-class split
  (``datasets/splits/fc100.json``), torchmeta's layout ``cifar100/data.hdf5`` +
  ``fine_names.json`` + ``fc100/{split}_labels.json`` (paper section 5.4 trains on FC100).
* :func:`build_cifar_fs`: the same ``data.hdf5`` and ``fine_names.json`` with Bertinetto et al.'s
  64 / 16 / 20 class split (torchmeta's ``cifar-fs`` lists, shipped as
  ``datasets/splits/cifar-fs/{split}.json``) in ``cifar-fs/{split}_labels.json``. FC100 and
  CIFAR-FS share ``data.hdf5``: building one rewrites it with the same content.
* :func:`build_cifar_standard`: the standard train/test sets (paper Tables 1-5) as
  ``cifar10|cifar100/{train,test}_data.hdf5``, labels in CIFAR index order.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from metahyper.data.layouts import read_split_file
from metahyper.data.sources.common import (
    BROKEN_ARCHIVE,
    check_read_sizes,
    download_failed,
    load_pickle,
    outside_layout,
    resolve_source,
    tar_files,
    validate_classes,
)
from metahyper.data.writing import check_writable, estimate_size, write_cache, write_splits
from metahyper.errors import UserError
from metahyper.io import check_free_space
from metahyper.progress import progress_bar


@dataclass(frozen=True)
class CifarFormat:
    folder: str  # folder inside the archive
    archive: str
    url: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes
    names_key: bytes
    per_class: dict[str, int]  # real images per class in each standard split
    num_classes: int

    @property
    def size(self) -> int:
        """Bytes of all images (uint8, 32x32x3)."""
        return sum(self.per_class.values()) * self.num_classes * 3072


CIFAR = {
    "cifar100": CifarFormat(
        "cifar-100-python",
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",),
        ("test",),
        "meta",
        b"fine_labels",
        b"fine_label_names",
        {"train": 500, "test": 100},
        100,
    ),
    "cifar10": CifarFormat(
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        b"labels",
        b"label_names",
        {"train": 5000, "test": 1000},
        10,
    ),
}


def download(kind: str, root: Path) -> Path:
    """Download and extract the official archive with torchvision (md5-checked); returns the folder."""
    from torchvision.datasets.utils import download_and_extract_archive

    fmt = CIFAR[kind]
    target = root / "downloads"
    check_free_space(root, 3 * fmt.size, f"the {fmt.archive} download and its extracted files")
    try:
        download_and_extract_archive(fmt.url, download_root=str(target), filename=fmt.archive, md5=fmt.md5)
    except (OSError, RuntimeError, ValueError, *BROKEN_ARCHIVE) as err:
        raise download_failed(fmt.url, target, err, f"download {fmt.archive} by hand and pass --source FILE") from None
    return target / fmt.folder


class _Archive:
    """Reads member pickles from the tar.gz, the extracted folder, or a folder holding either."""

    def __init__(self, source: Path, fmt: CifarFormat) -> None:
        self.fmt = fmt
        self.tar: tarfile.TarFile | None = None
        self.folder: Path | None = None
        if source.is_file():
            fix = f"pass the official {fmt.archive}"
            try:
                self.tar = tarfile.open(source, "r:*")
                self.files = tar_files(self.tar, source, fix)
            except BROKEN_ARCHIVE as err:
                raise UserError(f"{source} is not a readable {fmt.archive} ({err}); re-download it") from None
            for path in self.files:
                if path.parts[0] != fmt.folder:
                    raise outside_layout(source, path, f"{fmt.folder}/<file>", fix)
            read = {f"{fmt.folder}/{n}": self.files[p].size for n in (*fmt.train, *fmt.test, fmt.meta)
                    if (p := PurePosixPath(fmt.folder, n)) in self.files}  # fmt: skip
            check_read_sizes(source, read, 2 * fmt.size, fix)
        elif (source / fmt.meta).is_file():
            self.folder = source
        elif (source / fmt.folder / fmt.meta).is_file():
            self.folder = source / fmt.folder
        elif (source / fmt.archive).is_file():
            self.__init__(source / fmt.archive, fmt)
        else:
            raise UserError(
                f"{source} is neither {fmt.archive} nor a folder with {fmt.folder}/{fmt.meta}; "
                f"pass --source pointing at {fmt.archive} or use --download"
            )
        self.source = source

    def load(self, name: str) -> dict:
        what = f"{self.source}:{self.fmt.folder}/{name}"
        if self.tar is not None:
            try:
                payload = self.tar.extractfile(self.files[PurePosixPath(self.fmt.folder, name)]).read()
            except KeyError:
                raise UserError(
                    f"{self.source} has no member {self.fmt.folder}/{name}; "
                    f"is it the right archive ({self.fmt.archive})?"
                ) from None
            except BROKEN_ARCHIVE as err:
                raise UserError(
                    f"{self.source} is truncated or corrupt ({type(err).__name__}: {err}); "
                    f"re-download {self.fmt.archive} (or use --download)"
                ) from None
            obj = load_pickle(io.BytesIO(payload), what, encoding="bytes")
        else:
            path = self.folder / name
            if not path.is_file():
                raise UserError(f"{path} is missing; pass the complete {self.fmt.folder} folder or {self.fmt.archive}")
            with open(path, "rb") as f:
                obj = load_pickle(f, what, encoding="bytes")
        if not isinstance(obj, dict):
            raise UserError(f"{what} is a {type(obj).__name__}, expected a dict; is it the right archive?")
        return obj

    def names(self, key: bytes) -> list[str]:
        meta = self.load(self.fmt.meta)
        names = meta.get(key)
        if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
            raise UserError(f"{self.source}: {self.fmt.meta} has no list {key!r}; is it the right archive?")
        return [n.decode() if isinstance(n, bytes) else n for n in names]

    def batches(self, names: tuple[str, ...], label_keys: tuple[bytes, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Images uint8 (N, 32, 32, 3) and one int64 (N,) array per label key, over ``names``."""
        images, labels = [], [[] for _ in label_keys]
        for name in names:
            batch = self.load(name)
            data = batch.get(b"data")
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise UserError(
                    f"{self.source}:{name}: b'data' is {getattr(data, 'shape', type(data).__name__)} "
                    f"{getattr(data, 'dtype', '')}, expected uint8 (N, 3072); is it the right archive?"
                )
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            for out, key in zip(labels, label_keys):
                lab = np.asarray(batch.get(key, []))
                if lab.shape != (len(data),) or lab.dtype.kind not in "iu":
                    raise UserError(f"{self.source}:{name}: {key!r} is not {len(data)} integer labels")
                out.append(lab.astype(np.int64))
        return np.concatenate(images), [np.concatenate(x) for x in labels]


def _group(images: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise UserError(f"labels outside 0..{len(names) - 1}; is it the right archive?")
    return {names[c]: images[labels == c] for c in range(len(names)) if np.any(labels == c)}


def _resolve(kind: str, source: str | Path | None, root: Path, download_: bool) -> Path:
    """The archive or folder to read: downloaded when ``download_``, else ``source``, which must exist."""
    fix = f"pass the path of {CIFAR[kind].archive} (or its extracted folder), or --download"
    return resolve_source(source, fix, (lambda: download(kind, root)) if download_ else None)


def build_fc100(
    root: Path, source: str | Path | None = None, download: bool = False, force: bool = False, strict: bool = True
) -> list[Path]:
    """Build FC100 (torchmeta layout) from the CIFAR-100 archive; ``strict`` checks 100 x 600 images."""
    split = read_split_file("fc100.json")

    def labels(coarse_names: list[str], fine_by_coarse: dict[str, list[str]], s: str) -> list[list[str]]:
        return [[coarse_names[i], f] for i in split[s] for f in fine_by_coarse[coarse_names[i]]]

    return _build_cifar100_subset("fc100", labels, root, source, download, force, strict)


def build_cifar_fs(
    root: Path, source: str | Path | None = None, download: bool = False, force: bool = False, strict: bool = True
) -> list[Path]:
    """Build CIFAR-FS (torchmeta layout) from the CIFAR-100 archive; ``strict`` checks 100 x 600 images."""
    split = {s: read_split_file(f"cifar-fs/{s}.json") for s in ("train", "val", "test")}

    def labels(coarse_names: list[str], fine_by_coarse: dict[str, list[str]], s: str) -> list[list[str]]:
        for coarse, fine in split[s]:
            if fine not in fine_by_coarse.get(coarse, []):
                raise UserError(
                    f"CIFAR-100 source has no class {coarse}/{fine} of the CIFAR-FS {s} split; "
                    "pass the official cifar-100-python.tar.gz"
                )
        return split[s]

    return _build_cifar100_subset("cifar-fs", labels, root, source, download, force, strict)


def _build_cifar100_subset(
    subset: str, labels, root: Path, source: str | Path | None, download: bool, force: bool, strict: bool
) -> list[Path]:
    """torchmeta's CIFAR-100 layout with ``<subset>/{split}_labels.json`` from
    ``labels(coarse_names, fine_by_coarse, split)``. Only the subset's label files count as its
    cache for ``--force``; the shared ``data.hdf5`` and ``fine_names.json`` are rewritten."""
    fmt = CIFAR["cifar100"]
    data_path = root / "cifar100" / "data.hdf5"
    names_path = root / "cifar100" / "fine_names.json"
    label_paths = [root / "cifar100" / subset / f"{s}_labels.json" for s in ("train", "val", "test")]
    outputs = [data_path, names_path, *label_paths]
    check_writable(label_paths, force, subset)
    check_free_space(root, estimate_size(1, 100, fmt.size), f"the {subset} cache")
    archive = _Archive(_resolve("cifar100", source, root, download), fmt)
    fine_names = archive.names(b"fine_label_names")
    coarse_names = archive.names(b"coarse_label_names")
    images, (fine, coarse) = archive.batches(fmt.train + fmt.test, (b"fine_labels", b"coarse_labels"))
    classes = _group(images, fine, fine_names)
    validate_classes(
        f"CIFAR-100 source {archive.source}",
        classes,
        100 if strict else None,
        600 if strict else None,
        (32, 32),
        "pass the official cifar-100-python.tar.gz",
    )
    fine_by_coarse: dict[str, list[str]] = {}
    for i, coarse_name in enumerate(coarse_names):
        fine_idx = np.unique(fine[coarse == i])
        fine_by_coarse[coarse_name] = [fine_names[j] for j in fine_idx]
    if len(coarse_names) != 20 or any(len(set(coarse[fine == j])) != 1 for j in np.unique(fine)):
        raise UserError(
            f"{archive.source}: fine/coarse labels are inconsistent (expected 20 superclasses); re-download it"
        )
    split_labels = {s: labels(coarse_names, fine_by_coarse, s) for s in ("train", "val", "test")}
    with progress_bar(total=len(classes), desc=subset, unit="class") as bar:
        write_cache(
            {data_path: {f"{c}/{f}": classes[f] for c, fs in fine_by_coarse.items() for f in fs}},
            {names_path: fine_by_coarse, **dict(zip(label_paths, split_labels.values()))},
            progress=bar,
        )
    return outputs


def build_cifar10(
    root: Path, source: str | Path | None = None, download: bool = False, force: bool = False, strict: bool = True
) -> list[Path]:
    """:func:`build_cifar_standard` of CIFAR-10."""
    return build_cifar_standard("cifar10", root, source, download, force, strict)


def build_cifar100(
    root: Path, source: str | Path | None = None, download: bool = False, force: bool = False, strict: bool = True
) -> list[Path]:
    """:func:`build_cifar_standard` of CIFAR-100."""
    return build_cifar_standard("cifar100", root, source, download, force, strict)


def build_cifar_standard(
    kind: str,
    root: Path,
    source: str | Path | None = None,
    download: bool = False,
    force: bool = False,
    strict: bool = True,
) -> list[Path]:
    """Build the standard train/test caches of ``cifar10`` or ``cifar100`` (labels in CIFAR order)."""
    fmt = CIFAR[kind]
    outputs = [root / kind / f"{s}_{x}" for s in ("train", "test") for x in ("data.hdf5", "labels.json")]
    check_writable(outputs, force, kind)
    check_free_space(root, estimate_size(2, 2 * fmt.num_classes, fmt.size), f"the {kind} cache")
    archive = _Archive(_resolve(kind, source, root, download), fmt)
    names = archive.names(fmt.names_key)
    splits = {}
    for split, members in (("train", fmt.train), ("test", fmt.test)):  # validate both before writing
        images, (labels,) = archive.batches(members, (fmt.label_key,))
        splits[split] = _group(images, labels, names)
        validate_classes(
            f"{kind} {split} source {archive.source}",
            splits[split],
            len(names) if strict else None,
            fmt.per_class[split] if strict else None,
            (32, 32),
            f"pass the official {fmt.archive}",
        )
    write_splits(
        root, {(kind, split): (classes, [n for n in names if n in classes]) for split, classes in splits.items()}
    )
    return outputs
