"""Configuration of every pipeline stage as a dataclass (a run directory's ``config.json``).

One dataclass per stage: :class:`PretrainConfig` (section 4.2 / 5.1), :class:`MetaTrainConfig`
(section 4, Algorithms 1 and 2, recipe of section 5.4), :class:`EvalConfig` (few-shot test
episodes) and :class:`DemoConfig` (the whole pipeline on the built-in glyphs). Each field declares
its command-line option once (:mod:`metahyper.options`): default, help, allowed values, bounds; the
CLI generates its commands' options from them, and the same checks run when a config is built in
Python (one-line :class:`~metahyper.errors.UserError`). The loops in :mod:`metahyper.train` take
these configs (so ``torchrun`` can call them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from metahyper.data.layouts import SPLITS
from metahyper.data.registry import LAYOUTS, layout_for
from metahyper.data.sources.meta_dataset import TRAINING_SOURCES as MD_TRAINING_SOURCES
from metahyper.data.transforms import PAD_MODES as TRANSFORM_PAD_MODES
from metahyper.errors import UserError
from metahyper.meta import BACKENDS, BN_MODES, OUTER_SCHEDULES
from metahyper.meta.rules import INNER_RULES
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.models import GROUP_NAMES, STEMS
from metahyper.options import Options, option, required, specs
from metahyper.train.meta_learner import HEADS

DATASETS = tuple(LAYOUTS)  # built-in; user datasets (`prepare folder`) are found under the data root
PRETRAIN_ONLY = ("imagenet",)  # read from an ImageNet folder by torchvision (metahyper.data.imagenet)
# `pretrain --dataset imagenet` defaults (the CLI applies them to options left at the CIFAR
# defaults). Section 5.2: SGD, 100 epochs, momentum 0.9, lr 0.1 divided by 10 every 30 epochs;
# its weight decay reads "x10^-4" (the digit is lost in our copy of the text): 1e-4, He et al.
# (2016)'s, whose architecture it uses. Batch 256: He et al.'s too (the paper gives none).
IMAGENET_RECIPE = {"epochs": 100, "milestones": [30, 60, 90], "gamma": 0.1, "weight_decay": 1e-4, "batch_size": 256}
# --algorithm: the options each preset sets, where the command line (or Python) leaves them at
# their defaults. ANIL (Raghu et al. 2020): only the head adapts; BOIL (Oh et al. 2021): only the
# body adapts (hyper models: the embeddings), the head is learned in the outer loop only; Meta-SGD
# (Li et al. 2017): a learned rate per element of every adapted parameter. MAML++ (Antoniou et al.
# 2019, section 4): LSLR, the multi-step loss over 15 epochs, per-step BatchNorm, first order for
# the first 50 epochs (the paper's words; its code's configs vary), cosine annealing of the outer
# lr down to 1e-5 (its code's min_learning_rate); epochs of --iterations-per-epoch (its 500).
ALGORITHMS: dict[str, dict[str, object]] = {
    "maml": {},
    "fomaml": {"first_order": True},
    "anil": {"inner": ["classifier"]},
    "boil": {"inner": ["body"]},
    "meta-sgd": {"inner_rule": "meta-sgd"},
    "maml++": {
        "inner_rule": "lslr",
        "msl_epochs": 15,
        "per_step_bn": True,
        "first_order_iterations": lambda cfg: 0 if cfg.first_order else 50 * cfg.iterations_per_epoch,
        "lr_schedule": "cosine",
        "min_lr": 1e-5,
    },
}
# Evaluation work is bounded like the inner steps (MAX_INNER_STEPS): episodes per evaluation or
# validation; the paper and Meta-Dataset use 600, large benchmarks 10,000.
MAX_EPISODES = 100_000
AUTOCAST = {None: None, "bf16": torch.bfloat16}  # --autocast name -> the dtype MAML autocasts forwards to
EVAL_METHODS = ("auto", "maml", "linear")  # metahyper.train.evaluate.build_scorer
# eval --benchmark: the test sources of each benchmark (metahyper.train.benchmark)
BENCHMARKS = {
    "meta-dataset": (
        "md-ilsvrc", "md-omniglot", "md-aircraft", "md-cub", "md-dtd", "md-quickdraw", "md-fungi", "md-vgg-flower",
        "md-traffic-sign", "md-mscoco",
    ),
}  # fmt: skip


def benchmark_sources(benchmark: str) -> tuple[str, ...]:
    """The test sources of ``--benchmark``: a name of :data:`BENCHMARKS`, or a comma list of datasets."""
    return BENCHMARKS.get(benchmark) or tuple(name for name in benchmark.split(",") if name)


SELECT_RULES = ("source", "target", "last")  # metahyper.train.meta_train: which model becomes best.pt
PAD_MODES = tuple(TRANSFORM_PAD_MODES)  # metahyper.data.transforms.random_crop_flip
LR_SCHEDULES = ("step", "swa")  # metahyper.train.pretrain.lr_factor
FIXED_EPISODES = {"ways": 5, "shots": 1, "queries": 15}  # meta-train --episodes fixed without --ways/--shots/--queries
EPISODE_KINDS = ("fixed", "variable")  # meta-train --episodes: EpisodeSampler or VariableEpisodeSampler
SOURCE_WEIGHTS = ("uniform", "size")  # metahyper.data.variable_episodes.MultiSourceSampler's weights
SOURCE_SETS = {"md-all": MD_TRAINING_SOURCES}  # --train names that stand for several datasets


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
    save_every: int = save_every_opt(1, "Epochs")
    resume: bool = resume_opt("Continue the run in --out exactly where its last.pt left it.")
    tensorboard: bool = option(
        False,
        "Also write the logged scalars as TensorBoard events in <out>/tensorboard (needs the [tensorboard] extra).",
    )

    def validate(self) -> None:
        super().validate()
        check_workers(self.num_workers)


@dataclass(kw_only=True)
class PretrainConfig(RunOptions):
    """Standard classification training (pretraining of section 4.2; the CIFAR recipe of section
    5.1: SGD, momentum 0.9, lr 0.1, 200 epochs, lr /5 at epochs 60, 120 and 160, weight decay 5e-4
    on plain networks, 6.25e-5 on the generated weights of hyper networks and none on embeddings /
    hypernetworks (section 3)). From Zagoruyko & Komodakis, whose "standard hyperparameters" section
    5.1 says it uses: batch 128, Nesterov momentum, random crops of the image padded by 4 pixels
    with reflections, horizontal flips. ``lr_schedule="swa"`` with ``swa_start``: Izmailov et al.'s
    SWA schedule (:func:`metahyper.train.pretrain.lr_factor`)."""

    dataset: str = dataset_opt(
        "Dataset whose --split classes are learned (or imagenet: --data-root holds its train/ and val/)."
    )
    model: str = option(
        "wrn-16-4", "Architecture, e.g. wrn-16-4 or hyper-wrn-16-4 (see `metahyper models`).", required=True
    )
    variant: int = option(1, "Hypernetwork sharing variant (hyper models).", choices=(1, 2))
    d: int | None = option(None, "Embedding depth d (default C_in).", min=1, flag="--embedding-depth", aliases=("--d",))
    hyper_bias: bool = option(False, "Hypernetwork with bias (Table 1 ablation).")
    hyper_bias_init: str = option(
        "uniform",
        "Initial --hyper-bias: uniform (PyTorch's conv default, +-1/sqrt(d*9)) or zero.",
        choices=("uniform", "zero"),
    )
    compressed: bool = option(False, "Seeded frozen embeddings (section 5.3).")
    embedding_seed: int = option(0, "Seed of the frozen embeddings of --compressed.", min=0, max=SEED_MAX)
    stem: str | None = option(
        None,
        "First layer: cifar (3x3 conv) or imagenet (7x7 stride-2 conv + max-pool, He et al. 2016); "
        "default: imagenet for --dataset imagenet, else cifar.",
        choices=tuple(STEMS),
    )
    split: str = option("train", "Split whose classes are learned.", choices=SPLITS)
    eval_split: str | None = option(
        None,
        "Split to validate on with the same classes (CLI default: test for cifar10/100; "
        "unset: a held-out part of --split).",
        choices=SPLITS,
    )
    # our choice: the paper names no validation data for pretraining on FC100 / MiniImageNet
    val_fraction: float = option(
        0.1, "Held-out images per class for validation when there is no --eval-split (0: none).", min=0, below=1
    )
    image_size: int | None = image_size_opt(
        "Resize images to this size (default: the cache's; imagenet: crops of 224)."
    )
    epochs: int = option(200, "Training epochs.", min=1)
    batch_size: int = option(128, "Global batch size (split over torchrun processes).", min=1)
    lr: float = option(0.1, "SGD learning rate.", above=0)
    momentum: float = option(0.9, "SGD momentum.", min=0, below=1)
    nesterov: bool = option(True, "Nesterov momentum (Zagoruyko & Komodakis).")
    milestones: list[int] = option([60, 120, 160], "Epochs at which the lr is multiplied by --gamma.", min=0)
    gamma: float = option(0.2, "Learning-rate factor at each milestone.", above=0)
    weight_decay: float = option(5e-4, "On plain weights (not embeddings / hypernetworks).", min=0)
    generated_l2: float = option(6.25e-5, "L2 on generated weights (hyper models).", min=0)
    augment: bool = option(True, "Random crop (padding 4) + horizontal flip.")
    pad_mode: str = option(
        "reflect", "Padding of the random crops: reflections (Zagoruyko & Komodakis) or zeros.", choices=PAD_MODES
    )
    lr_schedule: str = option(
        "step",
        "step: lr x --gamma at --milestones (then SWALR to --swa-lr from --swa-start); "
        "swa: Izmailov et al.'s SWA schedule (lr constant for the first half of the "
        "--swa-start epochs, linear to --swa-lr by 90% of them, then constant; needs --swa-start).",
        choices=LR_SCHEDULES,
    )
    swa_start: int | None = option(
        None, "First averaged epoch, 0-based (SWA, Table 5; Izmailov et al.'s 1-based --swa_start=161 is 160 here)."
    )
    swa_lr: float = option(0.05, "SWA learning rate.", above=0)
    stage = "pretrain"

    @property
    def model_stem(self) -> str:
        """``stem``, or by dataset when unset: imagenet for ImageNet, cifar otherwise."""
        return self.stem or ("imagenet" if self.dataset == "imagenet" else "cifar")

    def validate(self) -> None:
        super().validate()
        check_dataset("--dataset", self.dataset, self.data_root, also=PRETRAIN_ONLY)
        if self.dataset == "imagenet" and self.data_root is None:
            raise UserError("--dataset imagenet needs --data-root DIR, the ImageNet folder holding train/ and val/")
        if self.dataset == "imagenet" and self.eval_split is not None:
            raise UserError(
                "--eval-split does not apply to --dataset imagenet, which validates on DIR/val/; leave it out"
            )
        if self.swa_start is not None and not 0 <= self.swa_start < self.epochs:
            raise UserError(f"--swa-start must be an epoch in [0, {self.epochs}), got {self.swa_start}")
        if self.nesterov and self.momentum == 0:
            raise UserError("--nesterov needs --momentum > 0; pass --no-nesterov for plain SGD")
        if self.lr_schedule == "swa" and self.swa_start is None:
            raise UserError("--lr-schedule swa needs --swa-start (the epoch averaging starts)")
        if sorted(self.milestones) != list(self.milestones):
            raise UserError(f"--milestones must be increasing, got {self.milestones}")


@dataclass(kw_only=True)
class MetaTrainConfig(RunOptions):
    """MAML meta-training (section 4, Algorithms 1 and 2; recipe of section 5.4 "Following Sun et
    al. (2019)": inner SGD lr 0.01, outer Adam lr 1e-3 halved every 1000 iterations down to 1e-4,
    meta-batch 4, 15 queries per class). Not in the paper: the inner steps (default 5 / 10, MAML's;
    Sun et al.'s meta-transfer code runs 50 in meta-training, meta-validation and meta-test), the
    iterations, BatchNorm and the model selection (``select_on``; our default: the source's val
    classes; docs/protocol.md). ``inner``/``outer`` None: the model kind's default groups (hyper:
    inner embeddings+classifier, outer hypernetworks+classifier+backbone; plain: everything in
    both)."""

    train: str = dataset_opt(
        "Dataset whose train split gives the meta-training tasks, or several, comma-separated (or md-all: "
        "Meta-Dataset's 8 training sources), each episode's source drawn per episode (--source-weights)."
    )
    episodes: str = option(
        "fixed",
        "Training and validation episodes: fixed (--ways/--shots/--queries) or variable (Meta-Dataset's: 5 to 50 "
        "ways, up to 500 support images, up to 10 queries per class; needs --head zero or proto).",
        choices=EPISODE_KINDS,
    )
    source_weights: str = option(
        "uniform",
        "Several --train datasets: each episode's source drawn uniformly (Meta-Dataset's default) or in "
        "proportion to its train images (size).",
        choices=SOURCE_WEIGHTS,
    )
    init: str = required("Pretrain run directory or checkpoint.", path="any")
    test: list[str] = option(
        [],
        "Datasets whose val split is also validated and logged, e.g. miniimagenet or a,b "
        "(cross-domain: the target; used for model selection only with --select-on target).",
    )
    select_on: str = option(
        "source",
        "best.pt: best on the --train dataset's val classes (source), on the first --test "
        "dataset's val classes (target: reported as selected on the target), or the final "
        "model (last).",
        choices=SELECT_RULES,
    )
    algorithm: str = option(
        "maml",
        "Preset of the MAML family: maml, fomaml (first order), anil (only the head adapts), boil (only the body "
        "adapts), meta-sgd (learned per-element inner rates), maml++ (LSLR, multi-step loss, per-step BatchNorm, "
        "first order for 50 epochs, cosine lr). It sets the options left at their defaults; an option given another "
        "value overrides it (to drop a piece, give the other pieces' flags without the preset).",
        choices=tuple(ALGORITHMS),
    )
    head: str = option(
        "learned",
        "Classifier at the start of each task: the meta-learned one (fixed ways), or one built at each task's width "
        "and adapted: zero (Ye & Chao 2022: invariant to the order of the task's labels) or proto (Proto-MAML, "
        "Triantafillou et al. 2020: 2 x the support prototypes of the body's features, bias -|prototype|^2).",
        choices=HEADS,
    )
    ways: int | None = option(
        None, "Classes per task (N-way; default 5; with --episodes variable drawn unless given).", min=2
    )
    shots: int | None = option(
        None, "Support images per class (K-shot; default 1; with --episodes variable drawn unless given).", min=1
    )
    queries: int | None = option(
        None, "Query images per class (default 15; with --episodes variable drawn unless given).", min=1
    )
    meta_batch: int = option(4, "Tasks per meta-batch.", min=1)
    iterations: int = option(5000, "Meta-training iterations (meta-batches).", min=1)
    inner_rule: str = option("sgd", "Inner update rule (metahyper.meta.rules).", choices=tuple(INNER_RULES))
    inner_steps: int = option(5, "Inner steps in meta-training.", min=0, max=MAX_INNER_STEPS)
    eval_inner_steps: int = option(
        10, "Inner steps at validation and test.", min=0, max=MAX_INNER_STEPS, aliases=("--inner-steps-eval",)
    )
    inner_lr: float = option(0.01, "Inner-loop learning rate.", above=0)
    outer_lr: float = option(1e-3, "Outer-loop Adam learning rate.", above=0)
    lr_schedule: str = option(
        "halve",
        "Outer lr schedule: halve (every --lr-halve-every iterations down to --min-lr; section 5.4) or cosine "
        "(annealed to --min-lr over --iterations; MAML++).",
        choices=OUTER_SCHEDULES,
    )
    lr_halve_every: int = option(1000, "Halve the outer lr every this many iterations ...", min=1)
    min_lr: float = option(1e-4, "... down to this.", above=0)
    first_order: bool = option(False, "First-order MAML (default: second order).")
    msl_epochs: int = option(
        0,
        "Multi-step loss (MAML++): the query losses after every inner step, weighted from uniform to the final "
        "step over this many epochs, then the final loss only (0: off; MAML++ uses 15).",
        min=0,
    )
    iterations_per_epoch: int = option(
        500, "Iterations of one epoch of --msl-epochs (MAML++'s total_iter_per_epoch).", min=1
    )
    first_order_iterations: int = option(
        0,
        "First order for this many first iterations, then second order (MAML++'s derivative-order annealing; 0: off).",
        min=0,
    )
    per_step_bn: bool = option(
        False,
        "Per-step BatchNorm (MAML++): affine parameters and running statistics per inner step, --inner-steps + 1 "
        "slots; evaluation with more steps reuses the last.",
    )
    inner_checkpoint: int = option(
        0,
        "Second order: keep every N-th adapted state of the inner loop and recompute the "
        "steps between in the backward (1: every step; 0: off). Same meta-gradient, peak memory "
        "about constant in --inner-steps, more time.",
        min=0,
    )
    bn: str = option(
        "transductive",
        "BatchNorm inside tasks: batch statistics, or the pretrained running statistics.",
        choices=BN_MODES,
    )
    support_chunk: int = support_chunk_opt(0)
    backend: str = backend_opt()
    autocast: str | None = option(
        None,
        "bfloat16 autocast of every forward (GPUs; CPUs with bf16 units). Meta-gradients move by bf16 rounding.",
        choices=tuple(k for k in AUTOCAST if k),
    )
    inner: list[str] | None = option(
        None,
        "Groups adapted in the inner loop, e.g. embeddings,classifier; body: embeddings (hyper) or backbone "
        "(plain) (default: by model kind).",
        choices=GROUP_NAMES,
    )
    outer: list[str] | None = option(
        None,
        "Groups learned in the outer loop, e.g. hypernetworks,classifier,backbone (default: by model kind).",
        choices=GROUP_NAMES,
    )
    val_every: int = option(500, "Validate every this many iterations (0: never).", min=0)
    val_episodes: int = option(300, "Validation episodes (0: no validation).", min=0, max=MAX_EPISODES)
    val_seed: int = option(0, "Seed of the fixed validation episodes.", min=0, max=SEED_MAX)
    image_size: int | None = image_size_opt("Input size (default: the size the --init model was trained at).")
    num_workers: int = workers_opt("DataLoader worker processes for episodes.")
    save_every: int = save_every_opt(100, "Iterations")
    resume: bool = resume_opt("Continue the run in --out exactly (same episodes, optimiser and RNG state).")

    stage = "meta-train"

    def __post_init__(self) -> None:
        if self.algorithm in ALGORITHMS:  # an unknown name is refused by validate()
            defaults = {s.name: s.default for s in specs(type(self))}
            for name, value in ALGORITHMS[self.algorithm].items():
                if getattr(self, name) == defaults[name]:
                    setattr(self, name, value(self) if callable(value) else value)
        super().__post_init__()

    def validate(self) -> None:
        if isinstance(self.test, str):  # one name or a comma list (config.json of earlier versions)
            self.test = [t for t in self.test.replace(" ", "").split(",") if t]
        if self.episodes == "fixed":
            for name, value in FIXED_EPISODES.items():
                setattr(self, name, value if getattr(self, name) is None else getattr(self, name))
        super().validate()
        sources = self.train_sources()
        if not sources:
            raise UserError(f"--train {self.train!r} names no dataset; pass one, a comma list or md-all")
        if len(set(sources)) != len(sources):
            raise UserError(f"--train lists a dataset twice: {','.join(sources)}")
        for name in sources:
            check_dataset("--train", name, self.data_root)
        self._check_variable_episodes()
        for name in self.test:
            check_dataset("--test", name, self.data_root)
        if self.min_lr > self.outer_lr:
            raise UserError(
                f"--min-lr {self.min_lr} is above --outer-lr {self.outer_lr}; the lr only halves down to --min-lr"
            )
        if self.msl_epochs and self.inner_checkpoint and not self.first_order:
            raise UserError(
                "--msl-epochs keeps the graph of every inner step for its query losses, so --inner-checkpoint cannot "
                "hold memory flat; drop one of them"
            )
        check_support_chunk(self.support_chunk, self.bn)
        if self.first_order and self.first_order_iterations:
            raise UserError("--first-order-iterations switches from first to second order; drop it or --first-order")
        if len(set(self.test)) != len(self.test):
            raise UserError(f"--test lists a dataset twice: {','.join(self.test)}")
        if self.select_on == "target" and not self.test:
            raise UserError("--select-on target needs --test (its first dataset is the target)")

    def _check_variable_episodes(self) -> None:
        """One line for what cannot take episodes of varying ways and shapes, or would be ignored,
        before any work."""
        if self.source_weights != "uniform" and len(self.train_sources()) == 1:
            raise UserError(
                f"--source-weights {self.source_weights} weighs several --train datasets, but {self.train} is one; "
                "drop it or name more datasets"
            )
        if self.episodes != "variable":
            return
        if self.head == "learned" and self.ways is None:
            raise UserError(
                "--episodes variable draws 5 to 50 ways per episode, but --head learned is a classifier of fixed "
                "width; add --head zero or --head proto, or fix the ways with --ways N"
            )
        if self.backend == "vmap":
            raise UserError(
                "--backend vmap batches tasks of one shape, but --episodes variable draws episodes of different "
                "sizes; use --backend func or higher"
            )

    def train_sources(self) -> list[str]:
        """The datasets of ``--train``: its comma-separated names, each name of :data:`SOURCE_SETS`
        (``md-all``) replaced by its datasets."""
        names = [n for n in self.train.replace(" ", "").split(",") if n]
        return [d for n in names for d in SOURCE_SETS.get(n, (n,))]

    def validation_domains(self) -> list[str]:
        """The datasets whose val split is validated: the sources (``train``), then ``test``."""
        return list(dict.fromkeys([*self.train_sources(), *self.test]))

    def selection_domains(self) -> list[str]:
        """The datasets whose mean val accuracy picks ``best.pt`` (and is logged as ``val_acc``): the
        sources (``--select-on source`` or ``last``), or the first ``--test`` dataset (``target``)."""
        return [self.test[0]] if self.select_on == "target" and self.test else self.train_sources()

    def selection_domain(self) -> str | None:
        """The name of what picks ``best.pt`` (None for ``--select-on last``): ``train`` as given
        (one dataset, a comma list or ``md-all``), or the first ``--test`` dataset."""
        return {"source": self.train, "target": self.test[0] if self.test else None, "last": None}[self.select_on]


MAML_ONLY = ("eval_inner_steps", "inner_lr", "bn", "head", "support_chunk")
"""The options of :class:`EvalConfig` that only the MAML method uses."""


@dataclass(kw_only=True)
class EvalConfig(CommonOptions):
    """Few-shot evaluation on seeded test episodes: mean accuracy +- 1.96 std / sqrt(n).
    ``dataset`` and ``shots`` are lists (a single name or number, or a comma-separated string of
    names, is turned into one): several give the cross-domain matrix, one evaluation per
    (dataset, shots) pair (:func:`metahyper.train.evaluate.evaluate_matrix`). ``method``:
    ``maml`` (adapt the checkpoint's inner groups), ``linear`` (frozen features, a fresh N-way
    linear head fitted on the support set: the pretrain-only baseline), ``auto`` (maml for
    meta-trained checkpoints, linear for pretrained ones)."""

    checkpoint: str = required("Run directory (best.pt, else last.pt) or .pt file.", path="any")
    dataset: list[str] = option(
        [],
        "Datasets whose --split classes make the episodes, comma-separated (several: one table, a row per dataset). "
        f"A built-in ({', '.join(DATASETS)}) or a user dataset (`prepare folder`); required unless --benchmark.",
    )
    # None: 1-shot (the command line requires --shots), 5-way, 15 queries; with --benchmark: variable
    shots: list[int] | None = option(
        None,
        "Support images per class (K-shot), comma-separated (several: a column each); required unless --benchmark "
        "(variable shots unless given).",
        min=1,
    )
    ways: int | None = option(None, "Classes per task (N-way; default 5, with --benchmark variable).", min=2)
    queries: int | None = option(None, "Query images per class (default 15, with --benchmark variable).", min=1)
    episodes: int = option(600, "Test episodes (mean +- 1.96 std / sqrt(n)).", min=1, max=MAX_EPISODES)
    split: str = option("test", "Split whose classes make the episodes.", choices=SPLITS)
    method: str = option(
        "auto",
        "maml: adapt the inner groups; linear: frozen features + fitted head (pretrain-only "
        "baseline); auto: by checkpoint.",
        choices=EVAL_METHODS,
    )
    eval_inner_steps: int | None = option(
        None,
        "Inner steps (default: the run's --eval-inner-steps).",
        min=0,
        max=MAX_INNER_STEPS,
        aliases=("--inner-steps",),
    )
    inner_lr: float | None = option(None, "Inner SGD learning rate (default: the run's).", above=0)
    bn: str | None = option(
        None, "BatchNorm inside tasks (default: the run's; pretrain-only: frozen running statistics).", choices=BN_MODES
    )
    head: str | None = option(
        None,
        "Classifier at the start of each task (default: the run's; pretrain-only: learned, a fresh head): learned, "
        "zero or proto (see meta-train --head).",
        choices=HEADS,
    )
    support_chunk: int | None = support_chunk_opt(None)
    backend: str = backend_opt()
    head_steps: int = option(100, "Adam steps of the linear head (--method linear).", min=1, max=MAX_INNER_STEPS)
    head_lr: float = option(0.01, "Adam learning rate of the linear head (--method linear).", above=0)
    image_size: int | None = image_size_opt("Input size (default: the size the model was trained at).")
    output: str | None = option(None, "JSON file (default: beside the checkpoint).", short="-o", path="file")
    benchmark: str | None = option(
        None,
        "Instead of --dataset: every test source of the benchmark built under --data-root (meta-dataset: the ten "
        "md-*; or a comma list of datasets), variable-way variable-shot episodes unless --ways/--shots/--queries fix "
        "them; one table, a row per source.",
    )
    skip_missing: bool = option(False, "With --benchmark: skip (and list) the sources not built instead of refusing.")

    stage = "eval"

    @property
    def single(self) -> bool:
        """One dataset and one shot count: :func:`~metahyper.train.evaluate.evaluate`'s case."""
        return len(self.dataset) == 1 and len(self.shots) == 1

    def validate(self) -> None:
        if isinstance(self.dataset, str):
            self.dataset = [name for name in self.dataset.split(",") if name]
        if isinstance(self.shots, int) and not isinstance(self.shots, bool):
            self.shots = [self.shots]
        if self.benchmark is None:  # fixed episodes: the defaults
            self.shots = [1] if self.shots is None else self.shots
            self.ways = 5 if self.ways is None else self.ways
            self.queries = 15 if self.queries is None else self.queries
        super().validate()
        if self.benchmark is not None:
            self._check_benchmark()
        elif self.skip_missing:
            raise UserError("--skip-missing applies to --benchmark only; drop it or pass --benchmark")
        for label, values in (("--dataset", self.dataset), ("--shots", self.shots)):
            if values is None and self.benchmark:
                continue
            if not values and not (self.benchmark and label == "--dataset"):
                raise UserError(f"{label} needs at least one value")
            if len(set(values)) != len(values):
                raise UserError(f"{label} lists a value twice ({','.join(map(str, values))}); list each once")
        for name in self.dataset:
            check_dataset("--dataset", name, self.data_root)
        if self.method == "linear":
            self.check_method("linear")
        check_support_chunk(self.support_chunk, self.bn)

    def _check_benchmark(self) -> None:
        """--benchmark replaces --dataset and takes one shot count; --skip-missing needs it."""
        if self.dataset:
            raise UserError(f"--benchmark {self.benchmark} names its own datasets; drop --dataset")
        if self.shots is not None and len(self.shots) > 1:
            raise UserError("--benchmark takes one --shots value (or none: variable shots); pass one")
        if self.benchmark in BENCHMARKS:
            return
        sources = benchmark_sources(self.benchmark)
        if not sources or len(set(sources)) != len(sources):
            raise UserError(
                f"--benchmark {self.benchmark!r} is neither {' nor '.join(BENCHMARKS)} nor a comma list of distinct "
                "datasets; pass one of those"
            )
        for name in sources:
            check_dataset("--benchmark", name, self.data_root, also=tuple(BENCHMARKS))

    def check_method(self, method: str) -> None:
        """A one-line :class:`UserError` naming the options given that ``method`` (``maml`` or
        ``linear``, as resolved from ``auto``) would ignore: the inner loop's options under
        ``linear``, which fits a head on frozen features."""
        if method != "linear":
            return
        ignored = [s for s in specs(type(self)) if s.name in MAML_ONLY and getattr(self, s.name) is not None]
        if ignored:
            flags = ", ".join("/".join((s.flag, *s.opt.aliases)) for s in ignored)
            how = (
                "--method linear" if self.method == "linear" else "a pretrain checkpoint (scored with --method linear)"
            )
            raise UserError(
                f"{flags} {'does' if len(ignored) == 1 else 'do'} not apply to {how}: it fits a linear head on "
                f"frozen features, with no inner loop; drop {'it' if len(ignored) == 1 else 'them'}, or pass "
                "--method maml to adapt with MAML"
            )


@dataclass(kw_only=True)
class DemoConfig(CommonOptions):
    """The whole pipeline on the built-in glyphs, small enough for 2 CPU cores in < 5 minutes:
    pretrain on glyphs-a, meta-train glyphs-a -> glyphs-b (val), test on glyphs-b at 1 and 5 shots,
    for a plain WRN and its hyper variant (a Table-8-style comparison, Figure 4 movement plot).
    Fields with ``cli=False`` are settable from Python only."""

    out: str = option("runs/demo", "Run directory of the demo.", path="dir")
    models: list[str] = option(["wrn-10-2", "hyper-wrn-10-2"], "Architectures compared.", cli=False)
    variant: int = option(1, "Hypernetwork sharing variant.", choices=(1, 2), cli=False)
    image_size: int = image_size_opt("Input size.", 16, cli=False)
    ways: int = ways_opt(cli=False)
    shots: list[int] = option([1, 5], "Test shots.", min=1, cli=False)
    queries: int = queries_opt(10, cli=False)
    pretrain_epochs: int = option(6, "Pretraining epochs.", min=1)
    pretrain_batch: int = option(64, "Pretraining batch size.", min=1, cli=False)
    pretrain_lr: float = option(0.05, "Pretraining learning rate.", above=0, cli=False)
    meta_iterations: int = option(60, "Meta-training iterations.", min=1)
    meta_batch: int = option(2, "Tasks per meta-batch.", min=1, cli=False)
    meta_shots: int = shots_opt(cli=False)
    inner_steps: int = option(2, "Inner SGD steps in meta-training.", min=0, max=MAX_INNER_STEPS, cli=False)
    eval_inner_steps: int = option(5, "Inner SGD steps at validation / test.", min=0, max=MAX_INNER_STEPS, cli=False)
    # the paper's 0.01 needs far more iterations than a CPU demo runs
    inner_lr: float = option(0.1, "Inner-loop SGD learning rate.", above=0, cli=False)
    first_order: bool = option(
        True, "Second-order MAML (slower; the demo default is first order).", flag="--second-order", invert=True
    )
    val_every: int = option(30, "Validate every this many iterations (0: never).", min=0, cli=False)
    val_episodes: int = option(20, "Validation episodes.", min=0, max=MAX_EPISODES, cli=False)
    eval_episodes: int = option(100, "Test episodes per model and shot.", min=1)
    glyph_images_per_class: int = option(20, "Images per class when the glyphs cache is built.", min=1, cli=False)
    # 1: tiny models gain little from more, and OpenMP spin-waits collapse when cores are shared
    threads: int | None = option(1, "CPU threads (more rarely helps these tiny models).", min=1)

    stage = "demo"
