"""MAML meta-training from a pretrained backbone (paper section 4, Algorithms 1 and 2; section 5.4).

1. Load the pretrained model (``--init``) and replace its classifier by a fresh N-way linear layer
   (section 4.2).
2. Each iteration ``j`` takes the meta-batch of episodes ``j*B .. j*B+B-1`` of the training
   dataset's train split (:func:`metahyper.data.meta_batches`), adapts the inner groups on each
   support set and accumulates the meta-gradient of the mean query loss over the B tasks into the
   outer groups (:meth:`metahyper.meta.MAML.meta_step`); Adam steps, the learning rate halves every
   ``lr_halve_every`` iterations down to ``min_lr``. Plain models: every parameter in both loops
   (Algorithm 1). Hyper models: embeddings + classifier adapt in the inner loop, hypernetworks +
   classifier learn in the outer loop (Algorithm 2); the paper is silent on the other plain layers
   (stem, stage-first convs of variant 1, shortcuts, BatchNorm): by default they learn in the outer
   loop and do not adapt (:mod:`metahyper.meta.maml`). ``--inner`` / ``--outer`` change both sets.
3. Every ``val_every`` iterations: accuracy on fixed episodes of the val split of the training
   dataset (the source) and of every ``--test`` dataset (mean +- 95% CI each; Figure 5 curves).
   ``best.pt`` is the model selected by ``--select-on``: best on the source's val classes
   (default), best on the first ``--test`` dataset's val classes (``target``), or the final model
   (``last``); its ``selection`` entry records the rule, dataset and iteration. With
   ``--select-on source`` the ``--test`` datasets are monitored only: they never change which
   model is kept, and without ``--test`` no other dataset is opened.
4. Per iteration: query loss / accuracy and, per 3x3 stage conv, the inner-loop weight movement
   ``||W_adapted - W||`` averaged over the tasks (generated weights for hyper layers, raw weights for
   plain ones; section 5.4, Figure 4).

Run directory: ``config.json``, ``best.pt``, ``last.pt`` (resumable every ``save_every``
iterations: model, Adam, schedule, RNG state, iteration, curves), ``tensorboard/`` (with
``--tensorboard``: the logged scalars), ``train.csv`` (per-iteration
loss, accuracy, lr), ``movement.csv`` (per-iteration movement per layer), ``val.csv`` /
``curves.json`` (validation points: ``val_acc`` / ``val_ci95`` of the selection dataset, the source
for ``last``, and ``<dataset>_acc`` / ``<dataset>_ci95`` per validated dataset), ``summary.json``. Distributed (``torchrun``): the tasks of a
meta-batch are sharded over ranks by global episode index, each backpropagates ``loss / B`` and the
meta-gradients are summed; only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import torch
from tqdm import tqdm

from metahyper.config import AUTOCAST, MetaTrainConfig
from metahyper.errors import UserError
from metahyper.models import WeightMovement, resolve_groups
from metahyper.progress import progress_bar
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.distributed import DistContext, all_reduce_grads, all_reduce_sum, resolve_device
from metahyper.train.evaluate import episode_accuracies, mean_ci
from metahyper.train.memory import check_step
from metahyper.train.run import Run, check_finite, releases_run_locks, seed_everything
from metahyper.train.tensorboard import ScalarLog


@releases_run_locks
def meta_train(
    cfg: MetaTrainConfig, ctx: DistContext | None = None, on_step: Callable[[int], None] | None = None
) -> dict:
    """Meta-train as configured; returns a summary (best validation accuracy, paths).
    ``on_step(iteration)`` is called before each iteration (0-based; after everything up to it
    has been written)."""
    from metahyper.data import EpisodeSampler, meta_batches, open_split
    from metahyper.meta import MAML, make_outer_optimizer

    cfg.validate()
    ctx = ctx or DistContext(device=resolve_device(cfg.device))
    if cfg.meta_batch < ctx.world_size:
        raise UserError(
            f"--meta-batch {cfg.meta_batch} is smaller than the {ctx.world_size} processes; every process needs a task"
        )
    device, is_main = ctx.device, ctx.is_main
    run = Run(cfg.out, cfg, is_main)
    board = ScalarLog(cfg.out, cfg.tensorboard, is_main)
    seed_everything(cfg.seed)

    init = load_checkpoint(cfg.init)
    if init.extra.get("stage") == "meta-train":
        raise UserError(
            f"--init {cfg.init} is a meta-trained run; pass a pretrain run (or use --resume to continue meta-training)"
        )
    image_size = cfg.image_size if cfg.image_size is not None else init.extra.get("input_size")
    task_images, tasks = cfg.ways * (cfg.shots + cfg.queries), -(-cfg.meta_batch // ctx.world_size)
    graphs = (
        2 if cfg.first_order or cfg.inner_checkpoint else 2 * (cfg.inner_steps + 1)
    )  # second order keeps every step
    check_step(
        "meta-training",
        dataclasses.replace(init.model_config, num_classes=cfg.ways),
        image_size,
        task_images,
        f"meta-batches of {tasks} tasks of {task_images} images",
        "lower --meta-batch, --shots/--queries, --inner-steps or "
        "--image-size (or use --inner-checkpoint), or --iterations",
        device,
        graphs=graphs,
        states=6,
        held_images=(tasks - 1) * task_images,
        logged_steps=cfg.iterations,
    )
    train_data = open_split(cfg.train, "train", root=cfg.data_root, in_memory=True)
    sampler = EpisodeSampler(train_data, cfg.ways, cfg.shots, cfg.queries, seed=cfg.seed, image_size=image_size)
    val_samplers: dict[str, EpisodeSampler] = {}
    if cfg.val_every and cfg.val_episodes:
        for domain in cfg.validation_domains():
            val_data = open_split(domain, "val", root=cfg.data_root, in_memory=True)
            val_samplers[domain] = EpisodeSampler(
                val_data, cfg.ways, cfg.shots, cfg.queries, seed=cfg.val_seed, image_size=image_size
            )
    primary = cfg.selection_domain() or cfg.train  # val_acc of the logs; the source when nothing is selected

    model = init.build_model()
    model.reset_classifier(cfg.ways)  # fresh N-way head (section 4.2); updates model.config
    model.to(device)
    inner_groups, outer_groups, inner, outer = resolve_groups(model, cfg.inner, cfg.outer)
    maml = MAML(
        model,
        inner=inner,
        outer=outer,
        inner_lr=cfg.inner_lr,
        inner_steps=cfg.inner_steps,
        eval_steps=cfg.inner_steps_eval,
        first_order=cfg.first_order,
        bn=cfg.bn,
        backend=cfg.backend,
        autocast=AUTOCAST[cfg.autocast],
        inner_checkpoint=cfg.inner_checkpoint,
    )
    if cfg.inner_checkpoint and cfg.first_order and is_main:
        warnings.warn(
            "--inner-checkpoint changes nothing with --first-order (first order keeps no inner-loop graph)",
            stacklevel=2,
        )
    named = dict(model.named_parameters())
    outer_params = [named[n] for n in maml.outer_params]
    optimizer, scheduler = make_outer_optimizer(
        outer_params, lr=cfg.outer_lr, halve_every=cfg.lr_halve_every, min_lr=cfg.min_lr
    )
    movement = WeightMovement(model)  # Figure 4, observed per task of each meta-step
    layers = movement.layers
    info = {
        "stage": "meta-train",
        "input_size": image_size,
        "train_dataset": cfg.train,
        "test_datasets": list(cfg.test),
        "pretrain": str(init.path),
        "maml": {
            "inner": list(inner_groups),
            "outer": list(outer_groups),
            "inner_lr": cfg.inner_lr,
            "inner_steps": cfg.inner_steps,
            "inner_steps_eval": cfg.inner_steps_eval,
            "bn": cfg.bn,
            "first_order": cfg.first_order,
            "inner_checkpoint": cfg.inner_checkpoint,
            "ways": cfg.ways,
            "shots": cfg.shots,
        },
    }

    run.start()
    board.open()
    n = cfg.iterations
    curves = {
        "loss": torch.zeros(n, dtype=torch.float64),
        "acc": torch.zeros(n, dtype=torch.float64),
        "lr": torch.zeros(n, dtype=torch.float64),
        "movement": torch.zeros(n, len(layers), dtype=torch.float64),
    }
    val_history: list[dict] = []
    best_val, start = -1.0, 0
    if run.resume:
        last = run.restore(model)
        optimizer.load_state_dict(last["state"]["optimizer"])
        scheduler.load_state_dict(last["state"]["scheduler"])
        start, best_val = int(last["iteration"]), float(last["best_val"])
        val_history = list(last["val_history"])
        for k, v in last["curves"].items():
            curves[k][: len(v)] = v

    def write_logs(done: int) -> None:
        run.write_csv(
            "train.csv",
            [
                {
                    "iteration": i + 1,
                    "loss": curves["loss"][i].item(),
                    "acc": curves["acc"][i].item(),
                    "lr": curves["lr"][i].item(),
                }
                for i in range(done)
            ],
            ["iteration", "loss", "acc", "lr"],
        )
        move = curves["movement"][:done].tolist()
        run.write_csv(
            "movement.csv",
            [{"iteration": i + 1, **dict(zip(layers, row))} for i, row in enumerate(move)],
            ["iteration", *layers],
        )
        per_domain = [f"{d}_{k}" for d in val_samplers for k in ("acc", "ci95")]
        run.write_csv(
            "val.csv", val_history, ["iteration", "val_acc", "val_ci95", *per_domain, "train_loss", "train_acc", "lr"]
        )
        run.write_json(
            "curves.json",
            {
                "model": model.config.label(),
                "ways": cfg.ways,
                "shots": cfg.shots,
                "validation": val_history,
                "layers": layers,
                "val_on": primary,
                "validated": list(val_samplers),
                "select_on": cfg.select_on,
            },
        )

    def save_last(done: int) -> None:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        run.save_last(
            model,
            state,
            **info,
            iteration=done,
            best_val=best_val,
            val_history=val_history,
            layers=layers,
            curves={k: v[:done].clone() for k, v in curves.items()},
        )
        write_logs(done)

    def selection(done: int, mean: float | None, ci: float | None) -> dict:
        return {
            "rule": cfg.select_on,
            "dataset": cfg.selection_domain(),
            "split": "val" if mean is not None else None,
            "iteration": done,
            "val_acc": mean,
            "val_ci95": ci,
        }

    def validate(done: int) -> None:
        nonlocal best_val
        window = slice(max(0, done - cfg.val_every), done)
        row: dict = {"iteration": done}
        for domain, val_sampler in val_samplers.items():
            accs = episode_accuracies(
                maml.evaluate_tasks,
                val_sampler,
                range(cfg.val_episodes),
                device,
                ctx,
                cfg.progress,
                desc=f"validate {domain}",
            )
            row[f"{domain}_acc"], row[f"{domain}_ci95"] = mean_ci(accs)
        mean, ci = row[f"{primary}_acc"], row[f"{primary}_ci95"]
        row.update(
            val_acc=mean,
            val_ci95=ci,
            train_loss=curves["loss"][window].mean().item(),
            train_acc=curves["acc"][window].mean().item(),
            lr=curves["lr"][done - 1].item(),
        )
        val_history.append(row)
        board.scalars(done, {k: v for k, v in row.items() if k != "iteration"}, prefix="val/")
        if cfg.select_on != "last" and mean > best_val:
            best_val = mean
            run.save(
                "best.pt", model, **info, iteration=done, val_acc=mean, val_ci95=ci, selection=selection(done, mean, ci)
            )
        if is_main and cfg.progress:
            shown = ", ".join(
                f"{d} {100 * row[f'{d}_acc']:.2f} +- {100 * row[f'{d}_ci95']:.2f} %" for d in val_samplers
            )
            tqdm.write(
                f"iteration {done}: val {shown}"
                + (f" (best on {primary} {100 * best_val:.2f} %)" if cfg.select_on != "last" else "")
            )

    batches = meta_batches(
        sampler,
        cfg.meta_batch,
        start=start,
        num_batches=n - start,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    bar = progress_bar(
        batches, initial=start, total=n, desc="meta-train", unit="it", disable=not (cfg.progress and is_main)
    )
    for it, tasks in enumerate(bar, start=start):
        if on_step is not None:
            on_step(it)
        tasks = [t.to(device, non_blocking=True) for t in tasks]
        optimizer.zero_grad(set_to_none=True)
        result = maml.meta_step(tasks, loss_scale=1.0 / cfg.meta_batch, observers=[movement])
        moves = movement.pop()
        all_reduce_grads(outer_params, ctx)
        curves["lr"][it] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        # log the means over the whole meta-batch (under torchrun: over every rank's tasks)
        local = (
            torch.tensor([result.loss, result.accuracy, *(moves[layer] for layer in layers), 1.0], dtype=torch.float64)
            * result.num_tasks
        )
        stats = all_reduce_sum(local, ctx)
        stats = stats[:-1] / stats[-1]
        curves["loss"][it], curves["acc"][it], curves["movement"][it] = stats[0], stats[1], stats[2:]
        done = it + 1
        validating = bool(val_samplers) and (done % cfg.val_every == 0 or done == n)
        saving = done % cfg.save_every == 0 or done == n
        check_finite(
            f"iteration {done}",
            "lower --outer-lr / --inner-lr",
            curves["loss"][it].item(),
            model if validating or saving else None,
        )
        board.scalars(
            done,
            {
                "loss": stats[0].item(),
                "acc": stats[1].item(),
                "lr": curves["lr"][it].item(),
                **{f"movement/{layer}": v for layer, v in zip(layers, stats[2:].tolist())},
            },
            prefix="train/",
        )
        if it % 5 == 0 or done == n:
            recent = slice(max(0, done - 20), done)
            bar.set_postfix(
                loss=f"{curves['loss'][recent].mean():.3f}", acc=f"{100 * curves['acc'][recent].mean():.1f}%"
            )
        if validating:
            validate(done)
        if is_main and saving:
            save_last(done)
    bar.close()

    board.close()
    if is_main and start >= n:  # resumed a finished run: nothing to do but rewrite the logs
        write_logs(n)
    final = val_history[-1] if val_history else None
    if cfg.select_on == "last":
        run.save("best.pt", model, **info, iteration=n, selection=selection(n, None, None))
    selected = selection(n, None, None) if cfg.select_on == "last" else None
    if selected is None and val_history:
        top = next(r for r in val_history if r["val_acc"] == best_val)
        selected = selection(top["iteration"], top["val_acc"], top["val_ci95"])
    summary = {
        "out": str(run.path),
        "model": model.config.label(),
        "iterations": n,
        "best_val_acc": best_val if val_history and cfg.select_on != "last" else None,
        "selection": selected,
        "final_validation": final,
        "train_acc_last": curves["acc"][max(0, n - 20) : n].mean().item(),
    }
    summary["restarted"] = run.restarted
    run.write_json("summary.json", summary)
    run.close()
    return summary
