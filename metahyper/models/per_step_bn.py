"""Per-step BatchNorm (MAML++, Antoniou et al. 2019, "How to train your MAML", section 4: BNRS
and BNWB): every BatchNorm holds one set of running statistics and affine parameters per inner
step, and a forward uses the set of the step it runs at.

* The step: :func:`inner_step` is the number of inner updates the parameters of the running
  forward have had (a context variable: models read it, the meta-learner sets it).
  :func:`~metahyper.meta.inner_loop.inner_loop` sets it around the support
  forward of each step (``0 .. steps - 1``); the backends set it around the query forwards
  (``steps``, or ``k`` for the query after step ``k`` of the multi-step loss). Outside any
  inner loop it is 0.
* Slots: a model meta-trained with ``S`` inner steps has ``S + 1`` slots (``ModelConfig.bn_steps``),
  slot ``k`` for the parameters after ``k`` updates, the last one for the final query. A step
  past the last slot (evaluation with more inner steps than meta-training) uses the last slot.
  MAML++'s reference code has ``S`` slots and runs the query after step ``k`` with slot ``k``
  (the slot of that step's support forward, before its update); ours gives the query its own.
* Statistics: in MAML's ``transductive`` mode every forward normalises with its batch's
  statistics (as MAML++'s code does, in training and at test). Inside :func:`recording_statistics`
  (entered by :meth:`MAML.meta_step <metahyper.meta.MAML.meta_step>`) the forwards also record
  their batch's statistics, and at the end of the meta-step each slot's running statistics move
  once (momentum, no gradient) towards the mean of those recorded for it, so that evaluation with
  ``bn="frozen"`` finds per-step statistics. Once per meta-step, not per forward as in MAML++'s
  code: the update then does not depend on how the meta-batch's tasks are split over processes
  (for equal shares). Recomputations of a checkpointed inner loop do not record again; under
  ``torch.func.vmap`` the statistics are per-task batched tensors that cannot leave it (backend
  ``vmap`` refuses per-step BatchNorm).

:func:`per_step_batchnorm` turns every ``nn.BatchNorm2d`` of a model into a
:class:`PerStepBatchNorm2d` whose slots all start as copies of it (a pretrained model's
BatchNorm becomes every step's starting point); parameter names stay, shapes gain a leading slot
dimension, so parameter groups, inner rules and optimisers need nothing special.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metahyper.errors import UserError

_STEP: ContextVar[int] = ContextVar("metahyper_inner_step", default=0)


class _Recorder:
    """The batch statistics the forwards of one :func:`recording_statistics` block saw, per module
    and slot; :meth:`apply` moves each slot once towards their mean."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], tuple[PerStepBatchNorm2d, int, list[Tensor]]] = {}

    def add(self, module: PerStepBatchNorm2d, slot: int, mean: Tensor, var: Tensor) -> None:
        key = (id(module.running_mean), slot)  # a module's buffers, shared by functional copies of it (higher)
        self.seen.setdefault(key, (module, slot, []))[2].append(torch.stack([mean, var]))

    @torch.no_grad()
    def apply(self) -> None:
        for module, slot, stats in self.seen.values():
            mean, var = torch.stack(stats).mean(0)
            module.running_mean[slot].lerp_(mean.to(module.running_mean.dtype), module.momentum)
            module.running_var[slot].lerp_(var.to(module.running_var.dtype), module.momentum)


_RECORD: ContextVar[_Recorder | None] = ContextVar("metahyper_record_statistics", default=None)


def inner_step() -> int:
    """The inner step of the running forward (module docstring); 0 outside an inner loop."""
    return _STEP.get()


@contextmanager
def at_inner_step(step: int) -> Iterator[None]:
    """Forwards inside the block run at inner step ``step``."""
    token = _STEP.set(step)
    try:
        yield
    finally:
        _STEP.reset(token)


@contextmanager
def recording_statistics(on: bool = True) -> Iterator[None]:
    """Inside the block (``on``) batch-statistics forwards of :class:`PerStepBatchNorm2d` record
    their batch's statistics; when the block ends without an error, each slot's running statistics
    move once (momentum) towards the mean of those its forwards saw. ``on=False`` stops recording
    inside an enclosing block."""
    recorder = _Recorder() if on else None
    token = _RECORD.set(recorder)
    try:
        yield
    finally:
        _RECORD.reset(token)
    if recorder is not None:
        recorder.apply()


class PerStepBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with ``slots`` sets of affine parameters and running statistics
    (``weight``, ``bias``, ``running_mean``, ``running_var`` of shape ``[slots, C]``); a forward
    at inner step ``k`` uses set ``min(k, slots - 1)``. Modes as ``nn.BatchNorm2d``: training with
    running statistics tracked updates the slot's; training without (MAML's transductive mode)
    normalises with the batch's and records them inside :func:`recording_statistics`; eval uses the
    slot's running statistics. ``momentum`` must be a number (no cumulative average)."""

    def __init__(self, num_features: int, slots: int, eps: float = 1e-5, momentum: float = 0.1, **kwargs) -> None:
        if not (isinstance(slots, int) and slots >= 1):
            raise UserError(f"per-step BatchNorm needs slots >= 1 (inner steps + 1), got {slots!r}")
        if momentum is None:
            raise UserError("per-step BatchNorm needs a momentum (a cumulative average has no per-step count)")
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        self.slots = slots
        for store in (self._parameters, self._buffers):  # the same values, one row per slot
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = store.get(name)
                if value is not None:
                    rows = value.detach().unsqueeze(0).repeat(slots, 1)
                    store[name] = nn.Parameter(rows) if store is self._parameters else rows

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, slots={self.slots}"

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        k = min(inner_step(), self.slots - 1)
        weight = self.weight[k] if self.weight is not None else None
        bias = self.bias[k] if self.bias is not None else None
        if self.training and not self.track_running_stats:
            recorder = _RECORD.get()
            if recorder is not None and self.running_mean is not None:
                self._record(recorder, x, k)
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        mean = self.running_mean[k] if self.running_mean is not None else None
        var = self.running_var[k] if self.running_var is not None else None
        batch_stats = self.training or mean is None
        return F.batch_norm(x, mean, var, weight, bias, batch_stats, self.momentum, self.eps)

    @torch.no_grad()
    def _record(self, recorder: _Recorder, x: Tensor, k: int) -> None:
        """Record the per-channel mean and unbiased variance (as ``nn.BatchNorm2d``) of the batch
        ``x`` for slot ``k``."""
        values = x.detach().transpose(0, 1).reshape(x.shape[1], -1)
        if values.shape[1] >= 2:
            var, mean = torch.var_mean(values.to(torch.promote_types(values.dtype, torch.float32)), dim=1)
            recorder.add(self, k, mean, var)


def _from_batchnorm(bn: nn.BatchNorm2d, slots: int) -> PerStepBatchNorm2d:
    """A :class:`PerStepBatchNorm2d` whose every slot is a copy of ``bn`` (same device, dtype,
    flags)."""
    momentum = bn.momentum if bn.momentum is not None else 0.1
    new = PerStepBatchNorm2d(
        bn.num_features, slots, bn.eps, momentum, affine=bn.affine, track_running_stats=bn.track_running_stats
    )
    like = bn.weight if bn.weight is not None else bn.running_mean
    new = new.to(like.device, like.dtype) if like is not None else new
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            source = getattr(bn, name)
            if source is not None:
                getattr(new, name).copy_(source.unsqueeze(0).expand(slots, -1))
        if bn.num_batches_tracked is not None:
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    for name, p in new.named_parameters():
        p.requires_grad_(getattr(bn, name).requires_grad)
    new.train(bn.training)
    return new


def per_step_batchnorm(model: nn.Module, slots: int) -> nn.Module:
    """``model`` with every ``nn.BatchNorm2d`` replaced (in place) by a :class:`PerStepBatchNorm2d`
    of ``slots`` slots, each a copy of it; a model already per-step must have ``slots`` slots."""
    for name, child in list(model.named_children()):
        if isinstance(child, PerStepBatchNorm2d):
            if child.slots != slots:
                raise UserError(
                    f"{name} already has per-step BatchNorm of {child.slots} slots, not {slots}; "
                    "meta-train with the inner steps it was built for"
                )
        elif type(child) is nn.BatchNorm2d:
            setattr(model, name, _from_batchnorm(child, slots))
        else:
            per_step_batchnorm(child, slots)
    return model


def has_per_step_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, PerStepBatchNorm2d) for m in model.modules())
