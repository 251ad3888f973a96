"""Meta-learning (paper section 4, Algorithms 1 and 2).

:func:`inner_loop` is the functional primitive; :class:`MAML` the thin class over any
``nn.Module``; :data:`BACKENDS` how a meta-step is computed; :func:`make_outer_optimizer` the
paper's outer Adam with its step-halving schedule.
"""

from metahyper.meta.backends import BACKENDS, Backend, Observer, Task
from metahyper.meta.batchnorm import BN_MODES, batchnorm_mode
from metahyper.meta.inner_loop import autograd_grad, functorch_grad, inner_loop
from metahyper.meta.maml import MAML, MetaStepResult, make_outer_optimizer

__all__ = [
    "BACKENDS",
    "BN_MODES",
    "MAML",
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
