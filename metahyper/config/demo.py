"""The demo's config: :class:`DemoConfig` (the whole pipeline on the built-in glyphs)."""

from __future__ import annotations

from dataclasses import dataclass

from metahyper.config.common import (
    MAX_EPISODES,
    CommonOptions,
    image_size_opt,
    queries_opt,
    shots_opt,
    ways_opt,
)
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.options import option


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
