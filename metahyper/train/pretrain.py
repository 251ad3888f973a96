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
holds ``config.json``, ``history.json`` / ``history.csv``, ``log.jsonl``, ``best.pt`` (best validation
accuracy) and ``last.pt`` (resumable: optimiser, scheduler, SWA and RNG state); the loop, resume
and logging are :class:`~metahyper.train.trainer.Trainer`'s. Epoch ``e`` visits the
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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn
from torch.utils.data import DataLoader, Dataset, Subset

from metahyper.config import PretrainConfig
from metahyper.errors import UserError
from metahyper.models import (
    ModelConfig,
    build_from_config,
    generated_weight_penalty,
    optimizer_param_groups,
    record_generated_weights,
)
from metahyper.progress import progress_bar
from metahyper.train.distributed import DistContext, all_reduce_sum, convert_batchnorm, shard
from metahyper.train.memory import check_step
from metahyper.train.ratios import RatioMeter
from metahyper.train.run import check_finite, loss_bound
from metahyper.train.trainer import Trainer, TrainState


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


def _datasets(cfg: PretrainConfig, processes: int = 1):
    """``(split, training set, held-out set or None, input size)``; the split (and ``--eval-split``)
    loaded into memory or read in place as ``--in-memory`` says (:func:`~metahyper.data.load_splits`)."""
    from metahyper.data import ClassificationData, load_splits, open_split
    from metahyper.data.imagenet import IMAGE_SIZE, imagenet_folders

    if cfg.dataset == "imagenet":
        train, val = imagenet_folders(cfg.data_root, cfg.image_size or IMAGE_SIZE)
        return train, train, val, cfg.image_size or IMAGE_SIZE
    data = open_split(cfg.dataset, cfg.split, root=cfg.data_root)
    other = open_split(cfg.dataset, cfg.eval_split, root=cfg.data_root) if cfg.eval_split else None
    if other is not None and list(other.classes) != list(data.classes):
        raise UserError(
            f"{cfg.dataset} {cfg.eval_split} has other classes than {cfg.split}; "
            "--eval-split works for cifar10/cifar100 train/test; use --val-fraction for few-shot splits"
        )
    load_splits([data] if other is None else [data, other], cfg.in_memory, processes)
    held = None
    part, fraction = "all", 0.0
    if other is not None:
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


def pretrain(cfg: PretrainConfig, ctx: DistContext | None = None, on_step: Callable[[int], None] | None = None) -> dict:
    """Train a classifier as configured; returns a summary (best / final accuracy, paths).
    Files are written by the main process only. ``on_step(epoch)`` is called before each epoch
    (0-based; after everything up to it has been written)."""
    return Pretrainer(cfg, ctx, on_step).fit()


class Pretrainer(Trainer):
    """Classification training (module docstring)."""

    stage = "pretrain"
    cfg: PretrainConfig

    def check(self) -> None:
        if self.cfg.batch_size % self.ctx.world_size:
            raise UserError(
                f"--batch-size {self.cfg.batch_size} must be divisible by the {self.ctx.world_size} processes "
                "(it is the global batch)"
            )

    def setup(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        data, self.train_set, self.held, input_size = _datasets(cfg, ctx.world_size)
        config = ModelConfig(
            cfg.model, cfg.variant, data.num_classes, cfg.compressed, cfg.d, cfg.hyper_bias, cfg.embedding_seed,
            cfg.model_stem, hyper_bias_init=cfg.hyper_bias_init,
        )  # fmt: skip
        batch = -(-min(cfg.batch_size, len(self.train_set)) // ctx.world_size)
        fix = "lower --batch-size, --image-size or the model (--model, --embedding-depth)"
        check_step(
            "pretraining", config, input_size, batch, f"batches of {batch} images", fix, self.device, graphs=2, states=5
        )
        model = build_from_config(config).to(self.device)
        self.model = convert_batchnorm(model, ctx)  # under torchrun: BatchNorm statistics over the global batch
        self.state = TrainState("epoch", self._optimisers(), {"history": []})
        self.total = cfg.epochs
        self.info = {
            "stage": "pretrain",
            "input_size": input_size,
            "dataset": cfg.dataset,
            "classes": list(data.classes),
        }
        # DDP averages the ranks' gradients: each rank's loss is the mean over its B/W images, so the
        # average is the gradient of the mean over the global batch, as in one process.
        device_ids = [self.device] if self.device.type == "cuda" else None
        self.step_model = DistributedDataParallel(model, device_ids=device_ids) if ctx.distributed else self.model
        self.meter = RatioMeter(self.model)
        self.loader: DataLoader | None = None

    def _optimisers(self) -> dict[str, Any]:
        """SGD with the paper's regularisation, its schedule and, with ``swa_start``, the SWA model
        and (step schedule) SWALR: the stateful objects of :class:`TrainState`."""
        cfg = self.cfg
        optimizer = torch.optim.SGD(
            optimizer_param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
        )
        if cfg.lr_schedule == "swa":
            ratio = cfg.swa_lr / cfg.lr
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, cfg.swa_start, ratio))
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
            )
        objects: dict[str, Any] = {"optimizer": optimizer, "scheduler": scheduler}
        if cfg.swa_start is not None:
            objects["swa_model"] = AveragedModel(self.model)
            if cfg.lr_schedule == "step":
                objects["swa_scheduler"] = SWALR(optimizer, swa_lr=cfg.swa_lr)
        return objects

    def check_resume(self, extra: dict[str, Any]) -> None:
        """The classes ``last.pt`` was trained on must be the dataset's classes now: a cache
        rebuilt with other classes would not fit the classifier, or would relabel it silently."""
        saved, now = extra.get("classes"), list(self.info["classes"])
        if saved is None or list(saved) == now:
            return
        cfg = self.cfg
        change = (
            f"{len(saved)} classes then, {len(now)} now"
            if len(saved) != len(now)
            else f"the same {len(now)} classes in number, other names or order"
        )
        raise UserError(
            f"--resume: dataset {cfg.dataset} ({cfg.split} split) changed since {self.run.path / 'last.pt'} was "
            f"written ({change}); restore the cache the run started from, or start a new run with another --out"
        )

    def step(self, epoch: int) -> None:
        cfg, objects = self.cfg, self.state.objects
        self.train_set.set_epoch(epoch)  # augmentation draws depend on (seed, epoch, index) only
        self.loader = _epoch_loader(self.train_set, cfg, epoch, self.ctx)
        lr = objects["optimizer"].param_groups[0]["lr"]
        t0 = time.time()
        loss_sum, correct, seen = self._train_epoch(epoch)
        if "swa_model" in objects and epoch >= cfg.swa_start:
            objects["swa_model"].update_parameters(self.model)
        if "swa_scheduler" in objects and epoch >= cfg.swa_start:
            objects["swa_scheduler"].step()
        else:
            objects["scheduler"].step()
        totals = torch.stack(
            [loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64, device=self.device)]
        )
        loss_sum, correct, seen = all_reduce_sum(totals, self.ctx).tolist()  # over the ranks' shares of the epoch
        bound = loss_bound(len(self.info["classes"]))  # the same on every rank: the loss is reduced
        check_finite(f"epoch {epoch + 1}", "lower --lr", loss_sum / seen, bound=bound)
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen}
        self._end_epoch(epoch, row, time.time() - t0)

    def _train_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One pass over this rank's batches: ``(sum of losses, correct, images)``, on the device;
        stops the run if a loss or a weight became non-finite."""
        cfg, device, optimizer = self.cfg, self.device, self.state.objects["optimizer"]
        self.meter.reset()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        first_bad = torch.full((), -1, device=device, dtype=torch.long)  # first step with a non-finite loss
        show = cfg.progress and self.is_main
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        bar = progress_bar(self.loader, desc=desc, unit="batch", leave=False, disable=not show)
        for step, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with record_generated_weights(self.model) as generated:
                logits = self.step_model(x)
            loss = F.cross_entropy(logits, y)
            total = loss + generated_weight_penalty(generated, cfg.generated_l2) if self.model.config.is_hyper else loss
            optimizer.zero_grad(set_to_none=True)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(total.detach()), step, first_bad)  # no host sync
            total.backward()
            self.meter.update()
            optimizer.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        bad = int(first_bad)
        where = f"epoch {epoch + 1}" + (f", step {bad + 1}" if bad >= 0 else "")
        check_finite(where, "lower --lr", math.nan if bad >= 0 else None, self.model)
        return loss_sum, correct, seen

    def _end_epoch(self, epoch: int, row: dict[str, Any], seconds: float) -> None:
        """Validation, the epoch's log row, ``best.pt`` when validation improved."""
        cfg = self.cfg
        if self.held is not None:
            row["val_loss"], row["val_acc"] = classification_accuracy(
                self.model, self.held, self.device, ctx=self.ctx, num_workers=cfg.num_workers
            )
        row.update(self.meter.read())
        self.state.logs["history"].append(row)
        self.log.scalars(epoch + 1, {k: v for k, v in row.items() if k != "epoch"})
        improved = self.held is not None and row["val_acc"] > self.state.best
        if improved:
            self.state.best = row["val_acc"]
        if improved and "swa_model" not in self.state.objects:
            self.run.save("best.pt", self.model, **self.info, epoch=epoch + 1, val_acc=self.state.best)
        self.save_logs()
        val = f" val {100 * row['val_acc']:.2f}%" if self.held is not None else ""
        self.log.message(
            f"epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} train {100 * row['train_acc']:.2f}%"
            f"{val} lr {row['lr']:.4g} ({seconds:.1f}s)"
        )

    def save_logs(self) -> None:
        history = self.state.logs["history"]
        self.run.write_json("history.json", history)
        self.run.write_csv("history.csv", history)

    def finish(self) -> dict[str, Any]:
        cfg, history = self.cfg, self.state.logs["history"]
        summary = {
            "out": str(self.run.path),
            "model": self.model.config.label(),
            "epochs": cfg.epochs,
            "best_val_acc": self.state.best if self.held is not None else None,
            "final": history[-1] if history else None,
        }
        if "swa_model" in self.state.objects:
            summary["swa_val_acc"] = self._finish_swa()
        return summary

    def _finish_swa(self) -> float | None:
        """BatchNorm statistics of the averaged weights, which become ``swa.pt`` and ``best.pt``."""
        swa_model = self.state.objects["swa_model"]
        loader = self.loader or _epoch_loader(
            self.train_set, self.cfg, self.cfg.epochs - 1, self.ctx
        )  # resumed at the end
        update_bn(loader, swa_model, device=self.device)  # global BatchNorm: the same statistics as one process
        averaged = swa_model.module
        swa_val = None
        if self.held is not None:
            swa_val = classification_accuracy(
                averaged, self.held, self.device, ctx=self.ctx, num_workers=self.cfg.num_workers
            )[1]
        for name in ("swa.pt", "best.pt"):
            self.run.save(name, averaged, **self.info, epoch=self.cfg.epochs, val_acc=swa_val, swa=True)
        return swa_val
