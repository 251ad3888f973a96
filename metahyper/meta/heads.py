"""The classifier a task starts from: the head of :class:`~metahyper.meta.MAML` (``MAML(head=...)``).

* ``learned``: the model's own classifier, meta-learned like any outer parameter. Its width is
  fixed: a task must have exactly as many ways as it has rows (a one-line :class:`UserError`
  otherwise).
* ``zero``: a classifier of the task's width, all zeros (Ye & Chao 2022, "How to train your MAML
  to excel in few-shot classification"): invariant to the order of the task's labels.
* ``proto``: Proto-MAML (Triantafillou et al. 2020, Meta-Dataset, section 4): row ``k`` of the
  weight is ``2 c_k`` and bias ``k`` is ``-||c_k||^2``, where ``c_k`` is the mean of the body's
  features (the classifier's input, the penultimate layer) over the support images of class
  ``k``, computed with the task's starting parameters. Its logits are ``-||f - c_k||^2`` up to a
  term constant over the classes (Prototypical Networks' squared Euclidean distance).

``zero`` and ``proto`` are built per task at the task's width and then adapted by the inner loop
like any inner parameter; they are never meta-learned (the classifier's own values are left out of
the outer parameters). The gradient of the meta-loss flows through the prototypes to the body:
in second order through the inner loop and the prototypes (so-Proto-MAML); in first order with
the inner gradients as constants but still through the prototypes (fo-Proto-MAML, the variant
Meta-Dataset reports: the adapted head is ``2 c_k + (constant update)``).

A task's ways are its largest label plus one: labels ``0 .. ways - 1``, each with a support image
(:meth:`Head.ways` checks it in one line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metahyper.errors import UserError

HEADS = ("learned", "zero", "proto")


@dataclass(frozen=True)
class Head:
    """A :class:`MAML`'s head: ``kind`` (one of :data:`HEADS`), the names of the classifier's
    ``weight`` (``ways x features``) and ``bias`` (``None``: not known, e.g. a learned head of a
    model whose classifier was not named), its meta-learned ``width`` (rows), and ``fixed``: whether
    a task must have ``width`` ways (the learned head; or a per-task head with an already built
    inner rule that learns a tensor of each parameter's shape, e.g. Meta-SGD's rates: built by
    :class:`MAML` from its name instead, such a rule learns one row for the head, shared by the
    classes)."""

    kind: str = "learned"
    weight: str | None = None
    bias: str | None = None
    width: int | None = None
    fixed: bool = True
    rule: str = ""

    @property
    def per_task(self) -> bool:
        """Built at each task's width (``zero``, ``proto``)."""
        return self.kind != "learned"

    @property
    def names(self) -> tuple[str, ...]:
        """The classifier's parameter names (none for a learned head of an unnamed classifier)."""
        return tuple(n for n in (self.weight, self.bias) if n is not None)

    def ways(self, support_y: Tensor, query_y: Tensor | None = None, task: int = 0) -> int:
        """The ways of a task with these labels, or a one-line :class:`UserError` (labels outside
        ``0 .. ways - 1``, a class without support image, or ways a fixed head cannot take)."""
        labels = support_y if query_y is None else torch.cat([support_y.flatten(), query_y.flatten()])
        if support_y.numel() == 0:
            raise UserError(f"task {task} has no support image; every task needs one per class")
        low, high, top = torch.stack([labels.min(), labels.max(), support_y.max()]).tolist()
        counts = torch.bincount(support_y.flatten(), minlength=top + 1) if low >= 0 else None
        if low < 0 or high > top or bool((counts == 0).any()):
            raise UserError(
                f"task {task} needs labels 0..ways-1 with a support image for each class, got support labels "
                f"{sorted(set(support_y.flatten().tolist()))[:8]} and query labels up to {high}"
            )
        ways = top + 1
        if self.fixed and self.width is not None and ways != self.width:
            raise UserError(self._refusal(ways, task))
        return ways

    def _refusal(self, ways: int, task: int) -> str:
        if not self.per_task:
            return (
                f"the learned head is a fixed {self.width}-way classifier, but task {task} has {ways} ways; for "
                "variable ways use a head built per task: --head zero or --head proto (MAML(head='zero'|'proto'))"
            )
        return (
            f"the built inner rule {self.rule!r} learns a tensor of the {self.width}-way classifier's shape, but task "
            f"{task} has {ways} ways; pass MAML the rule's name or class instead (inner_rule={self.rule!r}): it then "
            "learns one row for a per-task head, shared by every class"
        )


def make_head(
    model: nn.Module, kind: str, classifier: Sequence[str], inner: Sequence[str], elementwise_rule: str = ""
) -> Head:
    """The :class:`Head` ``kind`` of ``model`` with the classifier ``classifier`` (its weight and
    bias names; may be empty for a learned head); ``elementwise_rule``: the name of an inner rule
    that learns a tensor of each parameter's shape, if it does. A one-line :class:`UserError` for
    an unknown kind, a classifier that is not one linear layer's weight and bias, or a per-task
    head whose classifier does not adapt."""
    if kind not in HEADS:
        raise UserError(f"unknown head {kind!r}; choose from {', '.join(HEADS)}")
    if not classifier:
        if kind != "learned":
            raise UserError(f"head {kind!r} needs the classifier: pass classifier=(weight name, bias name)")
        return Head()
    named = dict(model.named_parameters())
    names = tuple(classifier)
    shapes = [tuple(named[n].shape) if n in named else None for n in names]
    if len(names) != 2 or None in shapes or len(shapes[0]) != 2 or shapes[1] != shapes[0][:1]:
        raise UserError(
            f"classifier must name a linear layer's weight (ways x features) and bias (ways) among the model's "
            f"parameters, got {list(names)} of shapes {shapes}"
        )
    if kind != "learned" and not set(names) <= set(inner):
        missing = [n for n in names if n not in inner]
        raise UserError(f"head {kind!r} builds the classifier in every task, so it must adapt: {missing} are not inner "
                        "parameters")  # fmt: skip
    fixed = kind == "learned" or bool(elementwise_rule)
    return Head(kind, names[0], names[1], shapes[0][0], fixed, elementwise_rule)


def prototype_head(features: Tensor, y: Tensor, ways: int) -> tuple[Tensor, Tensor]:
    """Proto-MAML's classifier ``(2 C, -||C||^2)`` from the support ``features`` (``n x d``) and
    labels ``y``: ``C[k]`` is the mean feature of class ``k`` (every class has an image). Written
    with a one-hot product, so it runs under :func:`torch.func.vmap`."""
    onehot = (y[:, None] == torch.arange(ways, device=y.device)).to(features.dtype)
    prototypes = (onehot.T @ features) / onehot.sum(0)[:, None]
    return 2 * prototypes, -(prototypes * prototypes).sum(1)
