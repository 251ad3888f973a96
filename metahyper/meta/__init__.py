"""Meta-learning (paper section 4, Algorithms 1 and 2): MAML over named parameter groups.

:func:`inner_loop` is the functional primitive; :class:`MAML` the thin class the pipeline uses;
:func:`make_outer_optimizer` builds the paper's outer Adam + step-halving schedule.
"""

from metahyper.meta.maml import (
    BACKENDS,
    BN_MODES,
    MAML,
    MetaStepResult,
    Task,
    batchnorm_mode,
    default_groups,
    inner_loop,
    inner_loop_functorch,
    inner_loop_higher,
    make_outer_optimizer,
    resolve_groups,
)

__all__ = [
    "BACKENDS", "BN_MODES", "MAML", "MetaStepResult", "Task", "batchnorm_mode", "default_groups",
    "inner_loop", "inner_loop_functorch", "inner_loop_higher", "make_outer_optimizer", "resolve_groups",
]
