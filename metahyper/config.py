"""Configuration of every pipeline stage as a dataclass, saved as ``config.json`` in each run dir.

One dataclass per stage: :class:`PretrainConfig` (section 4.2 / 5.1), :class:`MetaTrainConfig`
(section 4, Algorithms 1 and 2, recipe of section 5.4), :class:`EvalConfig` (few-shot test
episodes) and :class:`DemoConfig` (the whole pipeline on the built-in glyphs). The CLI only parses
options into these; the loops in :mod:`metahyper.train` take them (so ``torchrun`` can call them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from metahyper.errors import UserError

C = TypeVar("C")

CONFIG_FILE = "config.json"
# Options that may differ between a run and its --resume without changing the results.
RESUME_FREE = frozenset({"resume", "device", "num_workers", "progress", "data_root"})


@dataclass
class PretrainConfig:
    """Standard classification training (paper section 4.2 pretraining; section 5.1 CIFAR recipe:
    SGD momentum 0.9, lr 0.1, batch 128, 200 epochs, lr x0.2 at 60/120/160; weight decay 5e-4 on
    plain weights, L2 6.25e-5 on generated weights, none on embeddings/hypernetworks)."""

    dataset: str
    out: str
    model: str = "wrn-16-4"
    variant: int = 1
    d: int | None = None
    hyper_bias: bool = False
    compressed: bool = False
    embedding_seed: int = 0
    split: str = "train"
    eval_split: str | None = None  # "test" for cifar10/100 (paper tables); None: held-out part of `split`
    val_fraction: float = 0.1  # held-out images per class when eval_split is None (0: no validation)
    image_size: int | None = None  # None: the cache's size
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    milestones: list[int] = field(default_factory=lambda: [60, 120, 160])
    gamma: float = 0.2
    weight_decay: float = 5e-4
    generated_l2: float = 6.25e-5
    augment: bool = True
    swa_start: int | None = None  # epoch from which SWA averages (section 3 "Momentum Control", Table 5)
    swa_lr: float = 0.05
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    save_every: int = 1  # epochs between resumable checkpoints
    data_root: str | None = None
    resume: bool = False
    progress: bool = True

    stage = "pretrain"


@dataclass
class MetaTrainConfig:
    """MAML meta-training (section 4, Algorithms 1 and 2; recipe of section 5.4 after Sun et al.
    2019: inner SGD lr 0.01, outer Adam lr 1e-3 halved every 1000 iterations down to 1e-4,
    meta-batch 4, 15 queries per class). ``inner``/``outer`` None: the defaults of
    :func:`metahyper.meta.default_groups` (hyper: inner embeddings+classifier, outer
    hypernetworks+classifier+backbone; plain: everything in both)."""

    train: str
    test: str
    init: str
    out: str
    ways: int = 5
    shots: int = 1
    queries: int = 15
    meta_batch: int = 4
    iterations: int = 5000
    inner_steps: int = 5
    inner_steps_eval: int = 10
    inner_lr: float = 0.01
    outer_lr: float = 1e-3
    lr_halve_every: int = 1000
    min_lr: float = 1e-4
    first_order: bool = False
    bn: str = "transductive"
    backend: str = "func"
    task_threads: int = 1  # tasks of a meta-batch run at once on threads (func backend; memory x this)
    autocast: str | None = None  # "bf16": bfloat16 autocast of every forward (CUDA; CPUs with bf16 units)
    inner: list[str] | None = None
    outer: list[str] | None = None
    val_every: int = 500
    val_episodes: int = 300
    val_seed: int = 0
    image_size: int | None = None  # None: the input size the --init checkpoint was trained at
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    save_every: int = 100  # iterations between resumable checkpoints
    data_root: str | None = None
    resume: bool = False
    progress: bool = True

    stage = "meta-train"


@dataclass
class EvalConfig:
    """Few-shot evaluation on seeded test episodes: mean accuracy +- 1.96 std / sqrt(n).
    ``method``: ``maml`` (adapt the checkpoint's inner groups), ``linear`` (frozen features, a
    fresh N-way linear head fitted on the support set: the pretrain-only baseline), ``auto``
    (maml for meta-trained checkpoints, linear for pretrained ones)."""

    checkpoint: str
    dataset: str
    shots: int = 1
    ways: int = 5
    queries: int = 15
    episodes: int = 600
    split: str = "test"
    seed: int = 0
    method: str = "auto"
    inner_steps: int | None = None  # None: the checkpoint's --inner-steps-eval
    inner_lr: float | None = None  # None: the checkpoint's
    bn: str | None = None  # None: the checkpoint's (pretrain-only: frozen running statistics)
    backend: str = "func"
    task_threads: int = 1  # episodes scored at once on threads (maml method, func backend)
    head_steps: int = 100
    head_lr: float = 0.01
    image_size: int | None = None  # None: the input size the checkpoint was trained at
    device: str = "auto"
    output: str | None = None  # JSON path; None: beside the checkpoint
    data_root: str | None = None
    progress: bool = True

    stage = "eval"


@dataclass
class DemoConfig:
    """The whole pipeline on the built-in glyphs, small enough for 2 CPU cores in < 5 minutes:
    pretrain on glyphs-a, meta-train glyphs-a -> glyphs-b (val), test on glyphs-b at 1 and 5 shots,
    for a plain WRN and its hyper variant (a Table-8-style comparison, Figure 4 movement plot)."""

    out: str = "runs/demo"
    models: list[str] = field(default_factory=lambda: ["wrn-10-2", "hyper-wrn-10-2"])
    variant: int = 1
    image_size: int = 16
    ways: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    queries: int = 10
    pretrain_epochs: int = 6
    pretrain_batch: int = 64
    pretrain_lr: float = 0.05
    meta_iterations: int = 60
    meta_batch: int = 2
    meta_shots: int = 1
    inner_steps: int = 2
    inner_steps_eval: int = 5
    inner_lr: float = 0.1  # the paper's 0.01 needs far more iterations than a CPU demo runs
    first_order: bool = True
    val_every: int = 30
    val_episodes: int = 20
    eval_episodes: int = 100
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    glyph_images_per_class: int = 20
    threads: int | None = 1  # CPU threads; 1: tiny models gain little from more, and OpenMP spin-waits collapse when cores are shared
    progress: bool = True

    stage = "demo"


def config_dict(cfg: Any) -> dict:
    """The config as a JSON-ready dict, with its ``stage`` name."""
    return {"stage": type(cfg).stage, **asdict(cfg)}


def save_config(run_dir: str | Path, cfg: Any) -> Path:
    """Write ``run_dir/config.json`` atomically (every run directory stores its full config)."""
    from metahyper.train.checkpoint import atomic_path

    path = Path(run_dir) / CONFIG_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(config_dict(cfg), indent=2) + "\n")
    return path


def read_config(run_dir: str | Path) -> dict:
    """The raw ``config.json`` of a run directory (with its ``stage``), or a UserError."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} has no {CONFIG_FILE}; pass a run directory written by metahyper")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg}); the run directory is damaged") from None


def load_config(run_dir: str | Path, cls: type[C]) -> C:
    """Rebuild a config dataclass from ``run_dir/config.json``."""
    data = read_config(run_dir)
    stage = data.pop("stage", None)
    if stage != cls.stage:
        raise UserError(f"{run_dir} is a {stage} run, not a {cls.stage} run")
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def check_resume_compatible(run_dir: str | Path, cfg: Any) -> None:
    """--resume must repeat the original options (except those in ``RESUME_FREE``)."""
    saved = read_config(run_dir)
    now = config_dict(cfg)
    diff = [k for k in now if k not in RESUME_FREE and saved.get(k) != now[k]]
    if diff:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {now[k]!r})" for k in diff[:3])
        raise UserError(f"--resume of {run_dir} with different options: {shown}; repeat the original options or use a new --out")
