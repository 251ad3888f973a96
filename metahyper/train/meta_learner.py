"""The meta-learner a run describes: :func:`build_maml` turns the :class:`~metahyper.meta.MamlSettings`
of a run (what meta-training stores and evaluation reads) into a :class:`~metahyper.meta.MAML` on
one of metahyper's models: parameter groups resolved to names (:func:`metahyper.models.resolve_groups`),
the head each task starts from (``head``: the meta-learned classifier, or one built at each task's
width: zero or Proto-MAML's, :mod:`metahyper.meta.heads`)."""

from __future__ import annotations

import torch
from torch import nn

from metahyper.errors import UserError
from metahyper.meta import HEADS, MAML, MamlSettings
from metahyper.models import resolve_groups

__all__ = ["HEADS", "build_maml"]


def build_maml(
    model: nn.Module, settings: MamlSettings, backend: str = "func", autocast: torch.dtype | None = None
) -> MAML:
    """The MAML of ``settings`` on ``model``; a one-line :class:`UserError` for groups the model
    lacks, or a head built per task that does not adapt."""
    groups = resolve_groups(model, settings.inner, settings.outer)
    classifier = resolve_groups(model, "classifier").inner
    if settings.head != "learned" and not set(classifier) <= set(groups.inner):
        raise UserError(f"--head {settings.head} restarts the classifier in every task, so it must adapt: "
                        "add classifier to --inner (or use --head learned)")  # fmt: skip
    kwargs = settings.maml_kwargs()
    return MAML(
        model,
        inner=groups.inner,
        outer=groups.outer,
        backend=backend,
        autocast=autocast,
        head=settings.head,
        classifier=classifier,
        **kwargs,
    )
