"""Configuration of every pipeline stage as a dataclass (a run directory's ``config.json``).

One dataclass per stage: :class:`PretrainConfig` (section 4.2 / 5.1), :class:`MetaTrainConfig`
(section 4, Algorithms 1 and 2, recipe of section 5.4), :class:`EvalConfig` (few-shot test
episodes) and :class:`DemoConfig` (the whole pipeline on the built-in glyphs). Each field declares
its command-line option once (:mod:`metahyper.options`): default, help, allowed values, bounds; the
CLI generates its commands' options from them, and the same checks run when a config is built in
Python (one-line :class:`~metahyper.errors.UserError`). The loops in :mod:`metahyper.train` take
these configs (so ``torchrun`` can call them).
"""

from metahyper.config.common import (
    DATASETS,
    MAX_EPISODES,
    CommonOptions,
    RunOptions,
)
from metahyper.config.demo import DemoConfig
from metahyper.config.eval import BENCHMARKS, EVAL_METHODS, MAML_ONLY, EvalConfig, benchmark_sources
from metahyper.config.meta_train import (
    ALGORITHMS,
    AUTOCAST,
    EPISODE_KINDS,
    FIXED_EPISODES,
    SELECT_RULES,
    SOURCE_SETS,
    SOURCE_WEIGHTS,
    MetaTrainConfig,
)
from metahyper.config.pretrain import IMAGENET_RECIPE, PretrainConfig

__all__ = [
    "ALGORITHMS",
    "AUTOCAST",
    "BENCHMARKS",
    "CommonOptions",
    "DATASETS",
    "DemoConfig",
    "EPISODE_KINDS",
    "EVAL_METHODS",
    "EvalConfig",
    "FIXED_EPISODES",
    "IMAGENET_RECIPE",
    "MAML_ONLY",
    "MAX_EPISODES",
    "MetaTrainConfig",
    "PretrainConfig",
    "RunOptions",
    "SELECT_RULES",
    "SOURCE_SETS",
    "SOURCE_WEIGHTS",
    "benchmark_sources",
]
