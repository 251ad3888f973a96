"""What the stages' configs share: the datasets and bounds behind their options, the option
helpers of several stages, and the base options (:class:`CommonOptions`, :class:`RunOptions`).
Each stage's own constants (presets, benchmarks, choices) live beside its config."""

from __future__ import annotations

import os
from dataclasses import dataclass

from metahyper.data.cache import IN_MEMORY
from metahyper.data.registry import LAYOUTS, layout_for
from metahyper.errors import UserError
from metahyper.meta import BACKENDS
from metahyper.options import Options, option, required

DATASETS = tuple(LAYOUTS)  # built-in; user datasets (`prepare folder`) are found under the data root
# Evaluation work is bounded like the inner steps (MAX_INNER_STEPS): episodes per evaluation or
# validation; the paper and Meta-Dataset use 600, large benchmarks 10,000.
MAX_EPISODES = 100_000


def check_dataset(label: str, name: str, data_root: str | None, also: tuple[str, ...] = ()) -> None:
    """A one-line :class:`UserError` (naming the option) unless ``name`` is a built-in dataset, one
    registered under the data root (:func:`metahyper.data.layouts.layout_for`) or one of ``also``."""
    if name in also:
        return
    try:
        layout_for(name, data_root)
    except UserError as err:
        more = f"; also {', '.join(also)}" if also else ""
        raise UserError(f"{label}: {err}{more}") from None


def dataset_opt(help: str, **kw):
    return required(f"{help} A built-in ({', '.join(DATASETS)}) or a user dataset (`prepare folder`).", **kw)


# Fields shared by several stages: one definition each.

SEED_MAX = 2**32 - 1  # numpy's SeedSequence takes non-negative seeds; torch's 64-bit seeds hold it


def seed_opt():
    return option(
        0, "Seed of everything random (same seed: same episodes and, on CPU, same numbers).", min=0, max=SEED_MAX
    )


def device_opt():
    return option("auto", "cpu, cuda, cuda:N or auto (cuda if available).")


def data_root_opt():
    return option(None, "Dataset cache root (default: $METAHYPER_DATA or the checkout's datasets/data).", path="dir")


def quiet_opt():
    return option(True, "No progress bars or per-epoch lines.", flag="--quiet", invert=True)


def workers_opt(help: str):
    return option(0, help, flag="--workers", min=0)


def in_memory_opt():
    return option(
        "auto",
        "Load the cache's splits into memory (yes), read them in place (no: same numbers, slower), or auto: "
        "load them when they take at most half the memory (each torchrun process loads its own copy).",
        choices=IN_MEMORY,
    )


def check_workers(workers: int) -> None:
    """More worker processes than CPUs only cost memory and start-up time."""
    cpus = os.cpu_count() or 1
    if workers > cpus:
        raise UserError(
            f"--workers {workers} is more than the {cpus} CPUs of this machine; use --workers {cpus} or fewer"
        )


def resume_opt(help: str):
    return option(False, help, from_file=False)


def save_every_opt(default: int, unit: str):
    return option(default, f"{unit} between resumable checkpoints.", min=1)


def image_size_opt(help: str, default: int | None = None, **kw):
    return option(default, help, min=1, **kw)


def out_opt():
    return required("Run directory.", path="dir")


def support_chunk_opt(default: int | None):
    """``--support-chunk``: the inner loop's support gradient in chunks of N images."""
    return option(
        default,
        "Inner loop: accumulate the support gradient over chunks of N images (same gradient; memory of one chunk "
        "without graph: first order, evaluation). Needs --bn frozen (batch statistics would differ per chunk). "
        "0: the whole support set" + ("." if default == 0 else " (default: the run's)."),
        min=0,
    )


def check_support_chunk(chunk: int | None, bn: str | None) -> None:
    """A one-line :class:`UserError` for support chunks under transductive BatchNorm, before any work."""
    if chunk and bn == "transductive":
        raise UserError(
            f"--support-chunk {chunk} splits the support set, but --bn transductive normalises each chunk with its own "
            "statistics (a different gradient); add --bn frozen or drop --support-chunk"
        )


def ways_opt(default: int = 5, **kw):
    return option(default, "Classes per task (N-way).", min=2, **kw)


def shots_opt(default: int = 1, **kw):
    return option(default, "Support images per class (K-shot).", min=1, **kw)


def queries_opt(default: int = 15, **kw):
    return option(default, "Query images per class.", min=1, **kw)


def backend_opt():
    return option("func", "Inner-loop implementation.", choices=tuple(BACKENDS))


@dataclass(kw_only=True)
class CommonOptions(Options):
    """Options of every command that computes: seed, device, where the caches are, progress."""

    seed: int = seed_opt()
    device: str = device_opt()
    data_root: str | None = data_root_opt()
    progress: bool = quiet_opt()


@dataclass(kw_only=True)
class RunOptions(CommonOptions):
    """Options of every training run (a run directory: :class:`metahyper.train.run.Run`)."""

    out: str = out_opt()
    num_workers: int = workers_opt("DataLoader worker processes.")
    in_memory: str = in_memory_opt()
    save_every: int = save_every_opt(1, "Epochs")
    resume: bool = resume_opt("Continue the run in --out exactly where its last.pt left it.")
    tensorboard: bool = option(
        False,
        "Also write the logged scalars as TensorBoard events in <out>/tensorboard (needs the [tensorboard] extra).",
    )

    def validate(self) -> None:
        super().validate()
        check_workers(self.num_workers)
