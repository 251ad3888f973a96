"""Named parameter groups, the paper's regularisation, and per-layer weights.

Groups (what optimisers and the meta-learner select by name):

* ``embeddings``: the E of every :class:`~metahyper.models.layers.HyperConv2d`;
* ``hypernetworks``: the H (and ablation bias) of every hypernetwork;
* ``classifier``: the final linear layer;
* ``backbone``: everything else (stem, plain convs, shortcuts, BatchNorm).

Regularisation (section 3, "Regularizing HyperResNets": "we regularizing the 2-norm of the
generated weights ... we do not regularize the embeddings and the hypernetwork"; section 5.1: "a
regularization penalty of 6.25e-5"): an L2 penalty on the generated weights and no weight decay on
E or H; plain weights keep weight decay 5e-4 (section 5.1). The penalty is ``coefficient / 2 *
||W||^2`` (our choice: the paper gives no formula; the 1/2 makes its gradient ``coefficient * W``,
the convention of SGD's weight decay that the plain networks' 5e-4 uses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from metahyper.errors import UserError
from metahyper.models.layers import HyperConv2d, HyperNetwork

GROUPS = ("embeddings", "hypernetworks", "classifier", "backbone")
# "body": what adapts besides the head in BOIL (Oh et al. 2021): the embeddings of a hyper model
# (the hypernetworks are meta-learned, Algorithm 2), the backbone of a plain one
GROUP_NAMES = (*GROUPS, "body")
HYPER_INNER = ("embeddings", "classifier")
HYPER_OUTER = ("hypernetworks", "classifier", "backbone")
PLAIN_INNER = PLAIN_OUTER = ("backbone", "classifier")
GENERATED_L2 = 6.25e-5
WEIGHT_DECAY = 5e-4


def group_of(param_name: str) -> str:
    """The group a parameter name belongs to."""
    if param_name.startswith("hypernets."):
        return "hypernetworks"
    if param_name.endswith(".embedding"):
        return "embeddings"
    if param_name.startswith("fc."):
        return "classifier"
    return "backbone"


def param_groups(model: nn.Module) -> dict[str, list[str]]:
    """Map each group name to the names (as in ``model.named_parameters()``) of its parameters."""
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, _ in model.named_parameters():
        groups[group_of(name)].append(name)
    return groups


def _parse_groups(groups: str | Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        groups = [g for g in groups.replace(" ", "").split(",") if g]
    groups = tuple(dict.fromkeys(groups))  # unique, in order
    unknown = [g for g in groups if g not in GROUP_NAMES]
    if unknown:
        raise UserError(f"unknown {what} parameter group(s) {unknown}; choose from {', '.join(GROUP_NAMES)}")
    if not groups:
        raise UserError(f"no {what} parameter groups given; name at least one of {', '.join(GROUPS)}")
    return groups


def default_groups(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(inner, outer) default groups of MAML: Algorithm 2 for hyper models (inner embeddings and
    classifier; outer hypernetworks, classifier and, where the paper is silent, the remaining
    plain layers), Algorithm 1 for plain ones (everything in both)."""
    if any(isinstance(m, HyperConv2d) for m in model.modules()):
        return HYPER_INNER, HYPER_OUTER
    return PLAIN_INNER, PLAIN_OUTER


class GroupSelection(NamedTuple):
    """The meta-learner's parameter groups (validated group names) and the names, in model order,
    of the parameters they hold (what :class:`metahyper.meta.MAML` takes)."""

    inner_groups: tuple[str, ...]
    outer_groups: tuple[str, ...]
    inner: tuple[str, ...]
    outer: tuple[str, ...]


def resolve_groups(
    model: nn.Module,
    inner_groups: str | Sequence[str] | None = None,
    outer_groups: str | Sequence[str] | None = None,
) -> GroupSelection:
    """The :class:`GroupSelection` of ``inner_groups`` / ``outer_groups`` in ``model`` (None:
    :func:`default_groups`; ``body``: ``embeddings`` of a hyper model, ``backbone`` of a plain one). Raises
    :class:`UserError` on unknown groups or on a group with no trainable parameter in this model
    (e.g. ``embeddings`` of a plain or a compressed network)."""
    d_inner, d_outer = default_groups(model)
    body = "embeddings" if d_inner == HYPER_INNER else "backbone"
    inner, outer = (
        tuple(dict.fromkeys(body if g == "body" else g for g in _parse_groups(groups, what) or default))
        for groups, what, default in ((inner_groups, "inner", d_inner), (outer_groups, "outer", d_outer))
    )
    present = {group_of(n) for n, p in model.named_parameters() if p.requires_grad}
    kind = "hyper" if d_inner == HYPER_INNER else "plain"
    for what, groups in (("inner", inner), ("outer", outer)):
        missing = [g for g in groups if g not in present]
        if missing:
            raise UserError(
                f"{what} group(s) {missing} have no trainable parameters in this {kind} model; "
                f"use groups among {sorted(present)} (defaults: inner {','.join(d_inner)}, outer {','.join(d_outer)})"
            )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return GroupSelection(
        inner,
        outer,
        tuple(n for n in names if group_of(n) in inner),
        tuple(n for n in names if group_of(n) in outer),
    )


def optimizer_param_groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """Optimiser groups: no weight decay on embeddings/hypernetworks, ``weight_decay`` on the rest."""
    hyper, plain = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (hyper if group_of(name) in ("embeddings", "hypernetworks") else plain).append(p)
    return [
        g
        for g in ({"params": plain, "weight_decay": weight_decay}, {"params": hyper, "weight_decay": 0.0})
        if g["params"]
    ]


def hyper_layers(model: nn.Module) -> dict[str, HyperConv2d]:
    """The generated layers by module path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, HyperConv2d)}


@contextmanager
def record_generated_weights(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the weights the hypernetworks generate during forward passes inside the block (a
    forward hook on each :class:`HyperNetwork`), so the L2 penalty reuses them instead of generating
    them again."""
    record: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _args, weight: record.append(weight))
        for m in model.modules()
        if isinstance(m, HyperNetwork)
    ]
    try:
        yield record
    finally:
        for h in handles:
            h.remove()


def generated_weight_penalty(weights: list[torch.Tensor], coefficient: float = GENERATED_L2) -> torch.Tensor | float:
    """``coefficient / 2 * sum ||W||^2`` over generated weights (gradient ``coefficient * W``, the
    weight-decay convention)."""
    if not weights:
        return 0.0
    return 0.5 * coefficient * sum(w.pow(2).sum() for w in weights)


WeightFn = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def layer_label(path: str) -> str:
    """A stage conv's path in the paper's 1-based wording: ``stages.1.0.conv2`` -> ``stage 2 block 1
    conv 2``; other paths unchanged."""
    parts = path.split(".")
    if len(parts) == 4 and parts[0] == "stages":
        return f"stage {int(parts[1]) + 1} block {int(parts[2]) + 1} conv {parts[3].removeprefix('conv')}"
    return path


def stage_conv_weights(model: nn.Module) -> dict[str, WeightFn]:
    """For every 3x3 conv of the residual stages, a function ``params -> weight`` (generated for
    hyper layers, raw for plain convs). ``params`` maps parameter names to tensors (e.g. adapted
    parameters inside the inner loop); missing names fall back to the model's own tensors.
    Used for weight movement (section 5.4, Figure 4) and export."""
    state = dict(model.named_parameters())
    state.update(dict(model.named_buffers()))  # frozen (compressed) embeddings are buffers
    hypernet_names = {id(h): f"hypernets.{i}" for i, h in enumerate(model.hypernets)}
    out: dict[str, WeightFn] = {}
    for path, module in model.named_modules():
        if not path.startswith("stages.") or not path.rsplit(".", 1)[-1].startswith("conv"):
            continue
        if isinstance(module, HyperConv2d):
            h = hypernet_names[id(module.hypernet)]
            pad = module.kernel_size // 2

            def fn(params, e=f"{path}.embedding", h=h, pad=pad, has_bias=module.hypernet.bias is not None):
                get = lambda n: params[n] if n in params else state[n]  # noqa: E731
                return F.conv2d(get(e), get(f"{h}.weight"), get(f"{h}.bias") if has_bias else None, padding=pad)

            out[path] = fn
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            out[path] = lambda params, n=f"{path}.weight": params[n] if n in params else state[n]
    return out
