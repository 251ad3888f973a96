"""Meta-learning (paper section 4, Algorithms 1 and 2).

:func:`inner_loop` is the functional primitive; :class:`MAML` the thin ``nn.Module`` over any
``nn.Module``; :data:`INNER_RULES` how an inner step updates the parameters;
:data:`HEADS` how a task's classifier starts; :data:`BACKENDS` how a
meta-step is computed; :class:`MamlSettings` what a checkpoint records of its MAML;
:func:`make_outer_optimizer` the paper's outer Adam with its step-halving schedule.
"""

from metahyper.meta.backends import BACKENDS, Backend, Observer, Task
from metahyper.meta.batchnorm import BN_MODES, batchnorm_mode
from metahyper.meta.heads import HEADS
from metahyper.meta.inner_loop import autograd_grad, functorch_grad, inner_loop
from metahyper.meta.maml import MAML, OUTER_SCHEDULES, MetaStepResult, make_outer_optimizer
from metahyper.meta.rules import INNER_RULES, InnerRule
from metahyper.meta.settings import MamlSettings

__all__ = [
    "BACKENDS",
    "BN_MODES",
    "HEADS",
    "INNER_RULES",
    "MAML",
    "OUTER_SCHEDULES",
    "InnerRule",
    "MamlSettings",
    "Backend",
    "MetaStepResult",
    "Observer",
    "Task",
    "autograd_grad",
    "batchnorm_mode",
    "functorch_grad",
    "inner_loop",
    "make_outer_optimizer",
]
