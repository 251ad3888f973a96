"""Scale-out with PyTorch's own engine: ``torchrun`` + ``torch.distributed`` (nccl on CUDA, gloo on CPU).

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op and the
commands run in one process. Under torchrun:

* pretraining uses :class:`~torch.nn.parallel.DistributedDataParallel`; BatchNorm statistics are
  synchronised over the global batch (``nn.SyncBatchNorm`` on GPUs, :class:`GlobalBatchNorm2d`
  on CPUs, where ``nn.SyncBatchNorm`` refuses to run) so that one distributed step equals one
  single-process step on the same global batch;
* meta-training shards the tasks of each meta-batch over ranks (:func:`shard`) and sums the
  meta-gradients (:func:`all_reduce_grads`); each task's loss is already scaled by 1/B of the
  global meta-batch, so the sum is the single-process meta-gradient;
* evaluation shards episodes and gathers the per-episode accuracies in episode order.

Only rank 0 writes files (:attr:`DistContext.is_main`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from metahyper.errors import UserError
from metahyper.models.per_step_bn import PerStepBatchNorm2d

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available; anything else is validated."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device} requested but CUDA is not available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(
            f"device {device} does not exist: this machine has {torch.cuda.device_count()} GPU(s); use cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}"
        )
    return dev


def init_distributed(device: str | None = None) -> DistContext:
    """Join the torchrun process group if launched by torchrun, else return a single-process context.

    The backend is nccl for CUDA devices and gloo otherwise; each rank takes ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world_size <= 1:
        return DistContext(device=dev)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, dev)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group. All ranks meet at a barrier first: tearing gloo down while another
    rank is still inside a collective aborts the process ("terminate called without an active
    exception")."""
    if ctx.distributed and dist.is_initialized():
        gc.collect()  # free DDP reducers (reference cycles) that hold the group before it goes
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def distributed_session(device: str | None = None) -> Iterator[DistContext]:
    """``with distributed_session(device) as ctx:`` joins torchrun's process group (if any) for the
    block and leaves it afterwards; what the CLI commands run in."""
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        shutdown(ctx)


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's contiguous part of ``items`` (sizes differ by at most one, earlier ranks larger)."""
    n, w, r = len(items), ctx.world_size, ctx.rank
    start = r * (n // w) + min(r, n % w)
    return list(items[start : start + n // w + (1 if r < n % w else 0)])


def all_reduce_grads(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Sum the ``.grad`` of ``params`` over ranks in one flat all-reduce (missing grads count as 0)."""
    if not ctx.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """``tensor`` summed over ranks (a new tensor; the input itself in one process)."""
    if not ctx.distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor


def average_per_step_statistics(model: nn.Module, ctx: DistContext) -> None:
    """Replace the running statistics of every per-step BatchNorm of ``model`` by their mean over
    ranks (no-op in one process): each rank records them from its own tasks of a meta-step."""
    if not ctx.distributed:
        return
    for m in model.modules():
        if isinstance(m, PerStepBatchNorm2d) and m.running_mean is not None:
            for stats in (m.running_mean, m.running_var):
                dist.all_reduce(stats)
                stats.div_(ctx.world_size)


def all_gather_list(local: list[T], ctx: DistContext) -> list[T]:
    """Concatenate every rank's list in rank order (picklable items)."""
    if not ctx.distributed:
        return list(local)
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, local)
    return [item for part in gathered for item in part]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the global batch of all ranks, on any device.

    ``nn.SyncBatchNorm`` only runs on accelerators; this computes the per-channel sum and sum of
    squares, all-reduces them with a differentiable all-reduce and
    normalises with the global mean and (biased) variance, updating the running statistics with
    the unbiased variance exactly as ``nn.BatchNorm2d`` does on one process.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), x.pow(2).sum(dim=(0, 2, 3)), count])
        stats = _AllReduceSum.apply(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean.pow(2)).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var.detach() * n / (n - 1), alpha=momentum)
        shape = (1, c, 1, 1)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batchnorm(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Make BatchNorm statistics global across ranks (no-op in one process). State-dict keys are
    unchanged, so checkpoints stay interchangeable with single-process runs."""
    if not ctx.distributed:
        return model
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            new.to(device=child.weight.device, dtype=child.weight.dtype)
            setattr(model, name, new)
        else:
            convert_batchnorm(child, ctx)
    return model


__all__ = [
    "DistContext",
    "GlobalBatchNorm2d",
    "all_gather_list",
    "all_reduce_grads",
    "all_reduce_sum",
    "convert_batchnorm",
    "distributed_session",
    "init_distributed",
    "resolve_device",
    "shard",
    "shutdown",
]
