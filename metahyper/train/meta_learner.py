"""The meta-learner a run describes: :func:`build_maml` turns the :class:`~metahyper.meta.MamlSettings`
of a run (what meta-training stores and evaluation reads) into a :class:`~metahyper.meta.MAML` on
one of metahyper's models: parameter groups resolved to names (:func:`metahyper.models.resolve_groups`),
the zero-initialised head (``head="zero"``: the classifier starts every task at zero)."""

from __future__ import annotations

import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.meta import MAML, MamlSettings
from metahyper.models import resolve_groups

HEADS = ("learned", "zero")


def build_maml(
    model: nn.Module, settings: MamlSettings, backend: str = "func", autocast: torch.dtype | None = None
) -> MAML:
    """The MAML of ``settings`` on ``model``; a one-line :class:`UserError` for groups the model
    lacks, or a zero head that does not adapt."""
    groups = resolve_groups(model, settings.inner, settings.outer)
    head = resolve_groups(model, "classifier").inner if settings.head == "zero" else ()
    if head and not set(head) <= set(groups.inner):
        raise UserError("--head zero restarts the classifier at zero in every task, so it must adapt: "
                        "add classifier to --inner (or use --head learned)")  # fmt: skip
    kwargs = settings.maml_kwargs()
    return MAML(
        model, inner=groups.inner, outer=groups.outer, backend=backend, autocast=autocast, zero_init=head, **kwargs
    )
