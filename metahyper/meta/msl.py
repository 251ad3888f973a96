"""The multi-step loss of MAML++ (MSL; Antoniou et al. 2019, "How to train your MAML", section 4;
reference code ``AntreasAntoniou/HowToTrainYourMAMLPytorch``, ``get_per_step_loss_importance_vector``):
the meta-loss is a weighted sum of the query losses after every inner step, with weights that move
from uniform to the final step over the first epochs.

With N inner steps and E annealing epochs, at epoch e (0-based; fractional epochs are not used):
every non-final weight is ``max(1/N - e / (N E), 0.03 / N)`` and the final one
``min(1/N + e (N - 1) / (N E), 1 - (N - 1) 0.03 / N)``; from epoch E on only the final query loss
counts (the reference code switches the multi-step loss off then).
"""

from __future__ import annotations


def msl_weights(steps: int, epoch: int, epochs: int) -> list[float] | None:
    """The importance of the query loss after each of ``steps`` inner steps at ``epoch`` of
    ``epochs`` annealing epochs; ``None`` (only the final loss) once ``epoch >= epochs`` or for
    fewer than 2 steps."""
    if steps < 2 or epoch >= epochs:
        return None
    decay, floor = 1.0 / steps / epochs, 0.03 / steps
    weights = [max(1.0 / steps - epoch * decay, floor) for _ in range(steps - 1)]
    final = min(1.0 / steps + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return [*weights, final]
