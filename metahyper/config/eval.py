"""The evaluation stage's config: :class:`EvalConfig` (few-shot test episodes, the
cross-domain matrix, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass

from metahyper.config.common import (
    DATASETS,
    MAX_EPISODES,
    CommonOptions,
    backend_opt,
    check_dataset,
    check_support_chunk,
    image_size_opt,
    in_memory_opt,
    support_chunk_opt,
)
from metahyper.data.layouts import SPLITS
from metahyper.errors import UserError
from metahyper.meta import BN_MODES
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.options import option, required, specs
from metahyper.train.meta_learner import HEADS

MAML_ONLY = ("eval_inner_steps", "inner_lr", "bn", "head", "support_chunk")
"""The options of :class:`EvalConfig` that only the MAML method uses."""
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


@dataclass(kw_only=True)
class EvalConfig(CommonOptions):
    """Few-shot evaluation on seeded test episodes: mean accuracy +- 1.96 std / sqrt(n).
    ``dataset`` and ``shots`` are lists (a single name or number, or a comma-separated string of
    names, is turned into one): several give the cross-domain matrix, one evaluation per
    (dataset, shots) pair (:func:`metahyper.train.eval_matrix.evaluate_matrix`). ``method``:
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
    in_memory: str = in_memory_opt()

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
