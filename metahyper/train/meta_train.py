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
3. Every ``val_every`` iterations: accuracy on fixed episodes of the test dataset's val split
   (mean +- 95% CI), ``best.pt`` on improvement (Figure 5 curves).
4. Per iteration: query loss / accuracy and, per 3x3 stage conv, the inner-loop weight movement
   ``||W_adapted - W||`` averaged over the tasks (generated weights for hyper layers, raw weights for
   plain ones; section 5.4, Figure 4).

Run directory: ``config.json``, ``best.pt``, ``last.pt`` (resumable every ``save_every``
iterations: model, Adam, schedule, RNG state, iteration, curves), ``train.csv`` (per-iteration
loss, accuracy, lr), ``movement.csv`` (per-iteration movement per layer), ``val.csv`` /
``curves.json`` (validation points), ``summary.json``. Distributed (``torchrun``): the tasks of a
meta-batch are sharded over ranks by global episode index, each backpropagates ``loss / B`` and the
meta-gradients are summed; only rank 0 writes.
"""

from __future__ import annotations


import torch
from tqdm import tqdm

from metahyper.config import MetaTrainConfig
from metahyper.errors import UserError
from metahyper.models import stage_conv_weights
from metahyper.train.checkpoint import load_checkpoint, save_checkpoint
from metahyper.train.distributed import DistContext, all_reduce_grads, all_reduce_sum, resolve_device
from metahyper.train.evaluate import episode_accuracies, mean_ci
from metahyper.train.runs import check_run_dir, fault_injection, rng_state, seed_everything, set_rng_state, start_run, write_csv, write_json


AUTOCAST = {None: None, "bf16": torch.bfloat16}  # --autocast -> MAML(autocast=...)


def _validate_config(cfg: MetaTrainConfig) -> None:
    for name in ("ways", "shots", "meta_batch", "iterations", "save_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.queries < 1:
        raise UserError(f"--queries must be >= 1, got {cfg.queries}")
    if cfg.autocast not in AUTOCAST:
        raise UserError(f"--autocast must be one of {', '.join(k for k in AUTOCAST if k)} (or unset), got {cfg.autocast!r}")
    if cfg.val_every < 0 or cfg.val_episodes < 0:
        raise UserError("--val-every and --val-episodes must be >= 0 (0 disables validation)")


def layer_label(path: str) -> str:
    """``stages.1.0.conv2`` -> ``stage 2 block 1 conv 2`` (the paper's 1-based wording)."""
    parts = path.split(".")
    if len(parts) == 4 and parts[0] == "stages":
        return f"stage {int(parts[1]) + 1} block {int(parts[2]) + 1} conv {parts[3].removeprefix('conv')}"
    return path


def meta_train(cfg: MetaTrainConfig, ctx: DistContext | None = None) -> dict:
    """Meta-train as configured; returns a summary (best validation accuracy, paths)."""
    from metahyper.data import EpisodeSampler, meta_batches, open_split
    from metahyper.meta import MAML, make_outer_optimizer

    _validate_config(cfg)
    ctx = ctx or DistContext(device=resolve_device(cfg.device))
    if cfg.meta_batch < ctx.world_size:
        raise UserError(f"--meta-batch {cfg.meta_batch} is smaller than the {ctx.world_size} processes; every process needs a task")
    device, is_main = ctx.device, ctx.is_main
    out = check_run_dir(cfg.out, cfg)
    seed_everything(cfg.seed)

    init = load_checkpoint(cfg.init)
    if init.extra.get("stage") == "meta-train":
        raise UserError(f"--init {cfg.init} is a meta-trained run; pass a pretrain run (or use --resume to continue meta-training)")
    image_size = cfg.image_size if cfg.image_size is not None else init.extra.get("input_size")
    train_data = open_split(cfg.train, "train", root=cfg.data_root, in_memory=True)
    sampler = EpisodeSampler(train_data, cfg.ways, cfg.shots, cfg.queries, seed=cfg.seed, image_size=image_size)
    val_sampler = None
    if cfg.val_every and cfg.val_episodes:
        val_data = open_split(cfg.test, "val", root=cfg.data_root, in_memory=True)
        val_sampler = EpisodeSampler(val_data, cfg.ways, cfg.shots, cfg.queries, seed=cfg.val_seed, image_size=image_size)

    model = init.build_model()
    model.reset_classifier(cfg.ways)  # fresh N-way head (section 4.2); updates model.config
    model.to(device)
    maml = MAML(model, inner_groups=cfg.inner, outer_groups=cfg.outer, inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps,
                eval_steps=cfg.inner_steps_eval, first_order=cfg.first_order, bn=cfg.bn, backend=cfg.backend,
                task_threads=cfg.task_threads, autocast=AUTOCAST[cfg.autocast])
    optimizer, scheduler = make_outer_optimizer(model, maml.outer_groups, lr=cfg.outer_lr, halve_every=cfg.lr_halve_every, min_lr=cfg.min_lr)
    named = dict(model.named_parameters())
    outer_params = [named[n] for n in maml.outer_params]
    layers = list(stage_conv_weights(model))
    info = {
        "stage": "meta-train", "input_size": image_size, "train_dataset": cfg.train, "test_dataset": cfg.test,
        "pretrain": str(init.path),
        "maml": {"inner": list(maml.inner_groups), "outer": list(maml.outer_groups), "inner_lr": cfg.inner_lr,
                 "inner_steps": cfg.inner_steps, "inner_steps_eval": cfg.inner_steps_eval, "bn": cfg.bn,
                 "first_order": cfg.first_order, "ways": cfg.ways, "shots": cfg.shots},
    }

    start_run(out, cfg, is_main)
    n = cfg.iterations
    curves = {"loss": torch.zeros(n, dtype=torch.float64), "acc": torch.zeros(n, dtype=torch.float64),
              "lr": torch.zeros(n, dtype=torch.float64), "movement": torch.zeros(n, len(layers), dtype=torch.float64)}
    val_history: list[dict] = []
    best_val, start = -1.0, 0
    if cfg.resume:
        last = load_checkpoint(out / "last.pt", expect_name=model.config.name)  # on CPU: RNG states must stay CPU tensors
        model.load_state_dict(last.state_dict)
        state = last.extra["state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start, best_val = int(last.extra["iteration"]), float(last.extra["best_val"])
        val_history = list(last.extra["val_history"])
        for k, v in last.extra["curves"].items():
            curves[k][: len(v)] = v

    def write_logs(done: int) -> None:
        write_csv(out / "train.csv", [{"iteration": i + 1, "loss": curves["loss"][i].item(), "acc": curves["acc"][i].item(),
                                       "lr": curves["lr"][i].item()} for i in range(done)], ["iteration", "loss", "acc", "lr"])
        move = curves["movement"][:done].tolist()
        write_csv(out / "movement.csv", [{"iteration": i + 1, **dict(zip(layers, row))} for i, row in enumerate(move)],
                  ["iteration", *layers])
        write_csv(out / "val.csv", val_history, ["iteration", "val_acc", "val_ci95", "train_loss", "train_acc", "lr"])
        write_json(out / "curves.json", {"model": model.config.label(), "ways": cfg.ways, "shots": cfg.shots,
                                         "validation": val_history, "layers": layers})

    def save_last(done: int) -> None:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
        save_checkpoint(out / "last.pt", model, **info, iteration=done, best_val=best_val, val_history=val_history,
                        layers=layers, curves={k: v[:done].clone() for k, v in curves.items()}, state=state)
        write_logs(done)

    def validate(done: int) -> None:
        nonlocal best_val
        accs = episode_accuracies(maml.evaluate_tasks, val_sampler, range(cfg.val_episodes), device, ctx, cfg.progress,
                                  desc="validate", chunk=cfg.task_threads)
        mean, ci = mean_ci(accs)
        window = slice(max(0, done - cfg.val_every), done)
        row = {"iteration": done, "val_acc": mean, "val_ci95": ci, "train_loss": curves["loss"][window].mean().item(),
               "train_acc": curves["acc"][window].mean().item(), "lr": curves["lr"][done - 1].item()}
        val_history.append(row)
        if mean > best_val:
            best_val = mean
            if is_main:
                save_checkpoint(out / "best.pt", model, **info, iteration=done, val_acc=mean, val_ci95=ci)
        if is_main and cfg.progress:
            tqdm.write(f"iteration {done}: val {100 * mean:.2f} +- {100 * ci:.2f} % (best {100 * best_val:.2f} %)")

    batches = meta_batches(sampler, cfg.meta_batch, start=start, num_batches=n - start, num_workers=cfg.num_workers,
                           pin_memory=device.type == "cuda", rank=ctx.rank, world_size=ctx.world_size)
    bar = tqdm(batches, initial=start, total=n, desc="meta-train", unit="it", disable=not (cfg.progress and is_main))
    for it, tasks in enumerate(bar, start=start):
        fault_injection(it)
        tasks = [t.to(device, non_blocking=True) for t in tasks]
        optimizer.zero_grad(set_to_none=True)
        result = maml.meta_step(tasks, loss_scale=1.0 / cfg.meta_batch)
        all_reduce_grads(outer_params, ctx)
        curves["lr"][it] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        # log the means over the whole meta-batch (under torchrun: over every rank's tasks)
        local = torch.tensor([result.loss, result.accuracy, *(result.movement.get(layer, 0.0) for layer in layers), 1.0],
                             dtype=torch.float64) * result.num_tasks
        stats = all_reduce_sum(local, ctx)
        stats = stats[:-1] / stats[-1]
        curves["loss"][it], curves["acc"][it], curves["movement"][it] = stats[0], stats[1], stats[2:]
        done = it + 1
        if it % 5 == 0 or done == n:
            recent = slice(max(0, done - 20), done)
            bar.set_postfix(loss=f"{curves['loss'][recent].mean():.3f}", acc=f"{100 * curves['acc'][recent].mean():.1f}%")
        if val_sampler is not None and (done % cfg.val_every == 0 or done == n):
            validate(done)
        if is_main and (done % cfg.save_every == 0 or done == n):
            save_last(done)
    bar.close()

    if is_main and start >= n:  # resumed a finished run: nothing to do but rewrite the logs
        write_logs(n)
    final = val_history[-1] if val_history else None
    summary = {"out": str(out), "model": model.config.label(), "iterations": n, "best_val_acc": best_val if val_history else None,
               "final_validation": final, "train_acc_last": curves["acc"][max(0, n - 20):n].mean().item()}
    if is_main:
        write_json(out / "summary.json", summary)
    return summary

