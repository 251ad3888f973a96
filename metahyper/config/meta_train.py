"""The meta-training stage's config: :class:`MetaTrainConfig` (section 4, Algorithms 1 and 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metahyper.config.common import (
    MAX_EPISODES,
    SEED_MAX,
    RunOptions,
    backend_opt,
    check_dataset,
    check_support_chunk,
    dataset_opt,
    image_size_opt,
    resume_opt,
    save_every_opt,
    support_chunk_opt,
    workers_opt,
)
from metahyper.data.sources.meta_dataset import TRAINING_SOURCES as MD_TRAINING_SOURCES
from metahyper.errors import UserError
from metahyper.meta import BN_MODES, OUTER_SCHEDULES
from metahyper.meta.rules import INNER_RULES
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.models import GROUP_NAMES
from metahyper.options import option, required, specs
from metahyper.train.meta_learner import HEADS

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
AUTOCAST = {None: None, "bf16": torch.bfloat16}  # --autocast name -> the dtype MAML autocasts forwards to
SELECT_RULES = ("source", "target", "last")  # metahyper.train.meta_train: which model becomes best.pt
FIXED_EPISODES = {"ways": 5, "shots": 1, "queries": 15}  # meta-train --episodes fixed without --ways/--shots/--queries
EPISODE_KINDS = ("fixed", "variable")  # meta-train --episodes: EpisodeSampler or VariableEpisodeSampler
SOURCE_WEIGHTS = ("uniform", "size")  # metahyper.data.variable_episodes.MultiSourceSampler's weights
SOURCE_SETS = {"md-all": MD_TRAINING_SOURCES}  # --train names that stand for several datasets


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
