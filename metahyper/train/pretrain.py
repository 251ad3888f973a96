"""Standard classification training (pretraining of section 4.2; the CIFAR recipe of section 5.1).

SGD (momentum 0.9, lr 0.1; section 5.1) with Nesterov momentum, batch 128 and reflection-padded
random crops + flips (Zagoruyko & Komodakis, whose "standard hyperparameters" section 5.1 says it
follows), a step schedule (200 epochs, lr /5 at 60/120/160; section 5.1) and the paper's
regularisation (section 3, values in 5.1): weight decay 5e-4 on plain weights, an L2 penalty
(6.25e-5) on the generated weights of hyper layers and none on embeddings or hypernetworks
(:func:`metahyper.models.optimizer_param_groups`, :func:`metahyper.models.generated_weight_penalty`).
Optional SWA (section 3 "Momentum Control", Table 5: "300 epochs of SWA training") with
:mod:`torch.optim.swa_utils`: the weights of every epoch from ``swa_start`` on are averaged,
BatchNorm statistics are recomputed with :func:`~torch.optim.swa_utils.update_bn` at the end and
the averaged model becomes the run's model (``best.pt``, ``swa.pt``). The learning rate meanwhile:
``lr_schedule="swa"``, Izmailov et al.'s schedule (:func:`lr_factor`); ``"step"``, the step
schedule, then :class:`~torch.optim.swa_utils.SWALR` to ``swa_lr`` from ``swa_start``.

Per epoch it logs loss, train / validation accuracy, learning rate and, per parameter group and
stage, the mean over the epoch's steps of ``||P|| / ||grad P||`` (Figure 2); ``--tensorboard``
also writes them as TensorBoard scalars (:class:`metahyper.train.tensorboard.ScalarLog`). The run directory
holds ``config.json``, ``history.json`` / ``history.csv``, ``best.pt`` (best validation accuracy)
and ``last.pt`` (resumable: optimiser, scheduler, SWA and RNG state). Epoch ``e`` visits the
training images in an order, and with augmentations, that depend only on ``(seed, e)``
(:meth:`metahyper.data.ClassificationData.set_epoch`), so
``--resume`` after a kill ends with the same weights as an uninterrupted run (on CPU).

``dataset="imagenet"`` (section 5.2, Table 4) trains on the ImageNet folder ``data_root``
(:mod:`metahyper.data.imagenet`: ``train/`` with random-resized crops and flips, validated on
``val/``; ``split``, ``eval_split``, ``val_fraction`` and ``augment`` do not apply) with the
ImageNet stem by default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from metahyper.config import PretrainConfig
from metahyper.errors import UserError
from metahyper.models import (
    ModelConfig,
    build_from_config,
    generated_weight_penalty,
    group_of,
    hyper_layers,
    optimizer_param_groups,
    record_generated_weights,
)
from metahyper.progress import progress_bar
from metahyper.train.distributed import DistContext, all_reduce_sum, convert_batchnorm, resolve_device, shard
from metahyper.train.memory import check_step
from metahyper.train.run import Run, check_finite, releases_run_locks, seed_everything
from metahyper.train.tensorboard import ScalarLog


def lr_factor(epoch: int, swa_start: int, swa_ratio: float) -> float:
    """Izmailov et al.'s SWA learning-rate schedule (their public code) as a factor of the initial
    lr for 0-based ``epoch``: with ``t = epoch / (swa_start + 1)`` (their ``--swa_start`` is our
    ``swa_start + 1``), 1 for ``t <= 0.5``, linear down to ``swa_ratio = swa_lr / lr`` at
    ``t = 0.9``, then ``swa_ratio`` (also through the averaging epochs)."""
    t = epoch / (swa_start + 1)
    if t <= 0.5:
        return 1.0
    if t <= 0.9:
        return 1.0 - (t - 0.5) / 0.4 * (1.0 - swa_ratio)
    return swa_ratio


def ratio_keys(model: nn.Module) -> list[str]:
    """For each parameter (``named_parameters`` order) its Figure-2 key ``group/where``:
    ``where`` is ``stage<s>`` (1-based; a hypernetwork belongs to the stage of its layers),
    ``stem``, ``final`` or ``fc``."""
    stage_of_hypernet: dict[int, int] = {}
    for path, layer in hyper_layers(model).items():
        stage_of_hypernet[id(layer.hypernet)] = int(path.split(".")[1]) + 1
    hypernet_stage = {
        f"hypernets.{i}": stage_of_hypernet.get(id(h)) for i, h in enumerate(getattr(model, "hypernets", []))
    }
    keys = []
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "stages":
            where = f"stage{int(parts[1]) + 1}"
        elif parts[0] == "hypernets":
            where = f"stage{hypernet_stage[f'hypernets.{parts[1]}']}"
        elif parts[0] in ("stem", "fc"):
            where = parts[0]
        else:
            where = "final"
        keys.append(f"{group_of(name)}/{where}")
    return keys


class RatioMeter:
    """Accumulates ``||P|| / ||grad P||`` per key (norms over all the key's parameters) on the
    device, synchronising only when read (Figure 2)."""

    def __init__(self, model: nn.Module) -> None:
        keys = ratio_keys(model)
        self.names = sorted(set(keys))
        index = {k: i for i, k in enumerate(self.names)}
        self.params = [p for p in model.parameters()]
        self.index = torch.tensor([index[k] for k in keys], device=self.params[0].device)
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros(len(self.names), dtype=torch.float64, device=self.index.device)
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        pairs = [(p, p.grad) for p in self.params if p.grad is not None]
        if not pairs:
            return
        idx = self.index[[i for i, p in enumerate(self.params) if p.grad is not None]]
        pn = torch.stack(torch._foreach_norm([p for p, _ in pairs])).double().pow(2)
        gn = torch.stack(torch._foreach_norm([g for _, g in pairs])).double().pow(2)
        psum = torch.zeros_like(self.total).index_add_(0, idx, pn).sqrt()
        gsum = torch.zeros_like(self.total).index_add_(0, idx, gn).sqrt()
        self.total += psum / gsum.clamp_min(1e-30)
        self.count += 1

    def read(self) -> dict[str, float]:
        if not self.count:
            return {}
        values = (self.total / self.count).tolist()
        return {f"ratio/{k}": v for k, v in zip(self.names, values)}


@torch.no_grad()
def classification_accuracy(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int = 256,
    ctx: DistContext | None = None,
    num_workers: int = 0,
) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` (eval mode) on ``dataset``; under torchrun each rank scores
    its shard and the sums are all-reduced, so every rank returns the single-process numbers."""
    ctx = ctx or DistContext(device=device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, count
    part = Subset(dataset, shard(range(len(dataset)), ctx)) if ctx.distributed else dataset
    for x, y in DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        x, y = x.to(device), y.to(device)
        out = model(x)
        sums += torch.stack(
            [
                F.cross_entropy(out, y, reduction="sum").double(),
                (out.argmax(1) == y).sum().double(),
                torch.tensor(float(len(y)), dtype=torch.float64, device=device),
            ]
        )
    model.train(was_training)
    loss, correct, n = all_reduce_sum(sums, ctx).tolist()
    return loss / max(n, 1), correct / max(n, 1)


def epoch_order(n: int, seed: int, epoch: int, ctx: DistContext) -> list[int]:
    """The order epoch ``epoch`` visits the ``n`` training images: a permutation that depends only on
    ``(seed, epoch)``; under torchrun rank ``r`` takes every ``world_size``-th index from ``r``, so
    with a per-rank batch of ``B / world_size`` the ranks' k-th batches together are exactly the
    k-th global batch of ``B`` of a single process."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return order[ctx.rank :: ctx.world_size]


def _datasets(cfg: PretrainConfig):
    from metahyper.data import ClassificationData, open_split
    from metahyper.data.imagenet import IMAGE_SIZE, imagenet_folders

    if cfg.dataset == "imagenet":
        train, val = imagenet_folders(cfg.data_root, cfg.image_size or IMAGE_SIZE)
        return train, train, val, cfg.image_size or IMAGE_SIZE
    data = open_split(cfg.dataset, cfg.split, root=cfg.data_root, in_memory=True)
    held = None
    part, fraction = "all", 0.0
    if cfg.eval_split:
        other = open_split(cfg.dataset, cfg.eval_split, root=cfg.data_root, in_memory=True)
        if list(other.classes) != list(data.classes):
            raise UserError(
                f"{cfg.dataset} {cfg.eval_split} has other classes than {cfg.split}; "
                "--eval-split works for cifar10/cifar100 train/test; use --val-fraction for few-shot splits"
            )
        held = ClassificationData(other, image_size=cfg.image_size)
    elif cfg.val_fraction > 0:
        part, fraction = "train", cfg.val_fraction
        held = ClassificationData(data, "val", fraction, seed=cfg.seed, image_size=cfg.image_size)
    train = ClassificationData(
        data, part, fraction, seed=cfg.seed, augment=cfg.augment, image_size=cfg.image_size, pad_mode=cfg.pad_mode
    )
    if not len(train):
        raise UserError(
            f"--val-fraction {cfg.val_fraction} leaves no training images of {cfg.dataset} {cfg.split}; lower it"
        )
    if held is not None and not len(held):
        raise UserError(
            f"--val-fraction {cfg.val_fraction} holds out no image of {cfg.dataset} {cfg.split}; raise it, or pass 0 "
            "for no validation"
        )
    input_size = cfg.image_size or int(data.image_size[0])
    return data, train, held, input_size


def _epoch_loader(train_set: Dataset, cfg: PretrainConfig, epoch: int, ctx: DistContext) -> DataLoader:
    """This rank's batches of ``epoch`` (global batch ``cfg.batch_size`` split evenly over ranks).
    In one process a last batch of a single image is skipped: BatchNorm cannot train on one value
    per channel (a 1x1 final feature map)."""
    order = epoch_order(len(train_set), cfg.seed, epoch, ctx)
    batch = cfg.batch_size // ctx.world_size
    return DataLoader(
        Subset(train_set, order),
        batch_size=batch,
        shuffle=False,
        num_workers=cfg.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=ctx.world_size == 1 and batch > 1 and len(order) % batch == 1,
    )


@releases_run_locks
def pretrain(cfg: PretrainConfig, ctx: DistContext | None = None, on_step: Callable[[int], None] | None = None) -> dict:
    """Train a classifier as configured; returns a summary (best / final accuracy, paths).
    Files are written by the main process only. ``on_step(epoch)`` is called before each epoch
    (0-based; after everything up to it has been written)."""
    cfg.validate()
    ctx = ctx or DistContext(device=resolve_device(cfg.device))
    if cfg.batch_size % ctx.world_size:
        raise UserError(
            f"--batch-size {cfg.batch_size} must be divisible by the {ctx.world_size} processes (it is the global batch)"
        )
    device, is_main = ctx.device, ctx.is_main
    run = Run(cfg.out, cfg, is_main)
    board = ScalarLog(cfg.out, cfg.tensorboard, is_main)
    seed_everything(cfg.seed)
    data, train_set, held, input_size = _datasets(cfg)
    config = ModelConfig(
        cfg.model,
        cfg.variant,
        data.num_classes,
        cfg.compressed,
        cfg.d,
        cfg.hyper_bias,
        cfg.embedding_seed,
        cfg.model_stem,
    )
    batch = -(-min(cfg.batch_size, len(train_set)) // ctx.world_size)
    check_step(
        "pretraining",
        config,
        input_size,
        batch,
        f"batches of {batch} images",
        "lower --batch-size, --image-size or the model (--model, --d)",
        device,
        graphs=2,
        states=5,
    )
    model = build_from_config(config).to(device)
    model = convert_batchnorm(model, ctx)  # under torchrun: BatchNorm statistics over the global batch
    optimizer = torch.optim.SGD(
        optimizer_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
    )
    if cfg.lr_schedule == "swa":
        ratio = cfg.swa_lr / cfg.lr
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg.swa_start, ratio))
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)
    swa_model = AveragedModel(model) if cfg.swa_start is not None else None
    swa_scheduler = SWALR(optimizer, swa_lr=cfg.swa_lr) if swa_model is not None and cfg.lr_schedule == "step" else None
    run.start()
    board.open()
    info = {"stage": "pretrain", "input_size": input_size, "dataset": cfg.dataset, "classes": list(data.classes)}

    history: list[dict] = []
    best_val, start_epoch = -1.0, 0
    if run.resume:
        last = run.restore(model)
        state = last["state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if swa_model is not None:
            swa_model.load_state_dict(state["swa_model"])
        if swa_scheduler is not None:
            swa_scheduler.load_state_dict(state["swa_scheduler"])
        history, best_val, start_epoch = list(last["history"]), float(last["best_val"]), int(last["epoch"])

    def save_last(epoch: int) -> None:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        if swa_model is not None:
            state["swa_model"] = swa_model.state_dict()
        if swa_scheduler is not None:
            state["swa_scheduler"] = swa_scheduler.state_dict()
        run.save_last(model, state, **info, epoch=epoch, history=history, best_val=best_val)

    # DDP averages the ranks' gradients: each rank's loss is the mean over its B/W images, so the
    # average is the gradient of the mean over the global batch, as in one process.
    step_model = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if ctx.distributed
        else model
    )
    meter = RatioMeter(model)
    is_hyper = model.config.is_hyper
    model.train()
    loader = None
    for epoch in range(start_epoch, cfg.epochs):
        if on_step is not None:
            on_step(epoch)
        train_set.set_epoch(epoch)  # augmentation draws depend on (seed, epoch, index) only
        loader = _epoch_loader(train_set, cfg, epoch, ctx)
        meter.reset()
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first step with a non-finite loss
        t0 = time.time()
        bar = progress_bar(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            disable=not (cfg.progress and is_main),
        )
        for step, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with record_generated_weights(model) as generated:
                logits = step_model(x)
            loss = F.cross_entropy(logits, y)
            total = loss + generated_weight_penalty(generated, cfg.generated_l2) if is_hyper else loss
            optimizer.zero_grad(set_to_none=True)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(total.detach()), step, first_bad)  # no host sync
            total.backward()
            meter.update()
            optimizer.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bad = int(first_bad)
        check_finite(
            f"epoch {epoch + 1}" + (f", step {bad + 1}" if bad >= 0 else ""),
            "lower --lr",
            math.nan if bad >= 0 else None,
            model,
        )
        if swa_model is not None and epoch >= cfg.swa_start:
            swa_model.update_parameters(model)
        if swa_scheduler is not None and epoch >= cfg.swa_start:
            swa_scheduler.step()
        else:
            scheduler.step()
        totals = torch.stack(
            [loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=device)]
        )
        loss_sum, correct, seen = all_reduce_sum(totals, ctx).tolist()  # over the ranks' shares of the epoch
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen}
        if held is not None:
            row["val_loss"], row["val_acc"] = classification_accuracy(
                model, held, device, ctx=ctx, num_workers=cfg.num_workers
            )
        row.update(meter.read())
        history.append(row)
        board.scalars(epoch + 1, {k: v for k, v in row.items() if k != "epoch"})
        improved = held is not None and row["val_acc"] > best_val
        if improved:
            best_val = row["val_acc"]
        if improved and swa_model is None:
            run.save("best.pt", model, **info, epoch=epoch + 1, val_acc=best_val)
        run.write_json("history.json", history)
        run.write_csv("history.csv", history)
        if (epoch + 1) % cfg.save_every == 0 or epoch + 1 == cfg.epochs:
            save_last(epoch + 1)
        if is_main and cfg.progress:
            val = f" val {100 * row['val_acc']:.2f}%" if held is not None else ""
            tqdm.write(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} train {100 * row['train_acc']:.2f}%"
                f"{val} lr {lr:.4g} ({time.time() - t0:.1f}s)"
            )

    board.close()
    summary = {
        "out": str(run.path),
        "model": model.config.label(),
        "epochs": cfg.epochs,
        "best_val_acc": best_val if held is not None else None,
        "final": history[-1] if history else None,
    }
    if swa_model is not None:
        if loader is None:  # resumed after the last epoch: rebuild the final epoch's loader
            loader = _epoch_loader(train_set, cfg, cfg.epochs - 1, ctx)
        update_bn(loader, swa_model, device=device)  # global BatchNorm: the same statistics as one process
        averaged = swa_model.module
        swa_val = (
            classification_accuracy(averaged, held, device, ctx=ctx, num_workers=cfg.num_workers)[1]
            if held is not None
            else None
        )
        summary["swa_val_acc"] = swa_val
        run.save("swa.pt", averaged, **info, epoch=cfg.epochs, val_acc=swa_val, swa=True)
        run.save("best.pt", averaged, **info, epoch=cfg.epochs, val_acc=swa_val, swa=True)
    summary["restarted"] = run.restarted
    run.write_json("summary.json", summary)
    run.close()
    return summary
