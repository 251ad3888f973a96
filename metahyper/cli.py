"""Command line: one thin click command per pipeline stage (see README for usage)."""

from __future__ import annotations

import click

from metahyper.errors import UserError


class _Group(click.Group):
    """Click group that turns :class:`UserError` into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="metahyper")
def main() -> None:
    """metahyper: hypernetwork residual networks, pretraining, MAML and cross-domain few-shot eval."""
    from metahyper.heap import retain_heap

    retain_heap()  # freed training memory stays in the heap (metahyper.heap; METAHYPER_HEAP=system: off)


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models_cmd(as_json: bool) -> None:
    """Table of every architecture: train / test (exported) / stored parameters beside the paper's."""
    import json

    from metahyper.models.catalog import catalog_rows

    rows = catalog_rows()
    if as_json:
        click.echo(json.dumps([{**r.config.to_dict(), "label": r.label, "train_params": r.train_params,
                                "test_params": r.test_params, "stored_params": r.stored_params,
                                "paper_train_m": r.paper_train_m, "paper_test_m": r.paper_test_m, "source": r.source}
                               for r in rows], indent=2))
        return
    fmt = "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10}  {}"
    click.echo(fmt.format("model", "train", "test", "stored", "paper tr.", "paper te.", "paper"))
    m = lambda v: "-" if v is None else f"{v:.2f}M"  # noqa: E731
    for r in rows:
        click.echo(fmt.format(r.label, m(r.train_params / 1e6), m(r.test_params / 1e6), m(r.stored_params / 1e6),
                              m(r.paper_train_m), m(r.paper_test_m), r.source))


@main.command("export")
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(path_type=str), help="Checkpoint file or run directory.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=str), help="Where to write the plain model.")
def export_cmd(checkpoint: str, output: str) -> None:
    """Convert a hyper network to its plain architecture (paper section 3) and save it."""
    from metahyper.models import count_parameters, to_plain
    from metahyper.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(checkpoint)
    plain = to_plain(ckpt.build_model().eval())
    save_checkpoint(output, plain, exported_from=str(ckpt.path), source_model=ckpt.model_config.to_dict())
    click.echo(f"exported {ckpt.model_config.label()} -> {plain.config.label()} ({count_parameters(plain):,} parameters) to {output}")


@main.command("prepare")
@click.argument("dataset", type=click.Choice(["fc100", "cifar10", "cifar100", "miniimagenet", "glyphs"]))
@click.option("--source", type=click.Path(path_type=str), help="Local archive or folder (see docs per dataset).")
@click.option("--download", is_flag=True, help="Download the official archive (CIFAR; md5-checked).")
@click.option("--root", type=click.Path(path_type=str), help="Cache root (default: $METAHYPER_DATA or datasets/data).")
@click.option("--force", is_flag=True, help="Overwrite an existing cache.")
@click.option("--image-size", type=int, default=32, show_default=True, help="glyphs only: image size.")
def prepare_cmd(dataset: str, source: str | None, download: bool, root: str | None, force: bool, image_size: int) -> None:
    """Build the HDF5 cache of DATASET (torchmeta layout)."""
    from metahyper.data import prepare

    options = {"image_size": image_size} if dataset == "glyphs" else {}
    written = prepare(dataset, root=root, source=source, download=download, force=force, **options)
    click.echo(f"{dataset}: wrote {len(written)} files under {written[0].parent.parent}")


@main.command("datasets")
@click.option("--root", type=click.Path(path_type=str), help="Cache root (default: $METAHYPER_DATA or datasets/data).")
def datasets_cmd(root: str | None) -> None:
    """List and validate the dataset caches found under the cache root."""
    from metahyper.data import default_root, list_caches

    rows = list_caches(root)
    click.echo(f"cache root: {root or default_root()}")
    if not rows:
        click.echo("no caches found; build one with `metahyper prepare glyphs` (offline) or see `metahyper prepare --help`")
        return
    click.echo(f"{'dataset':<14}{'split':<7}{'classes':>8}{'img/class':>11}{'size':>8}  status")
    for r in rows:
        status = "ok" if r.error is None else f"ERROR: {r.error}"
        click.echo(f"{r.dataset:<14}{r.split:<7}{r.classes:>8}{r.images_per_class:>11}{r.image_size:>8}  {status}")


# ------------------------------------------------------------------------------------------------
# Pipeline: pretrain, meta-train, eval, plots, demo (issue 4). Thin: parse options into a config
# dataclass (metahyper.config) and call metahyper.train.* / metahyper.plots. pretrain, meta-train and
# eval run distributed under torchrun (metahyper.train.distributed); only rank 0 prints and writes.


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r} (e.g. 60,120,160)") from None


def _groups(text: str | None) -> list[str] | None:
    return [g for g in text.replace(" ", "").split(",") if g] if text else None


_device_opt = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto (cuda if available).")
_seed_opt = click.option("--seed", default=0, show_default=True, help="Seed of everything random (same seed: same episodes and, on CPU, same numbers).")
_root_opt = click.option("--data-root", type=click.Path(file_okay=False, path_type=str), default=None, help="Dataset cache root (default: $METAHYPER_DATA or the checkout's datasets/data).")
_quiet_opt = click.option("--quiet", is_flag=True, help="No progress bars or per-epoch lines.")


@main.command("pretrain")
@click.option("--dataset", required=True, help="fc100, miniimagenet, cifar10, cifar100, glyphs-a, glyphs-b.")
@click.option("--model", required=True, help="Architecture, e.g. wrn-16-4 or hyper-wrn-16-4 (see `metahyper models`).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Run directory.")
@click.option("--variant", default=1, show_default=True, type=click.IntRange(1, 2), help="Hypernetwork sharing variant (hyper models).")
@click.option("--d", "d", default=None, type=int, help="Embedding depth d (default C_in).")
@click.option("--hyper-bias", is_flag=True, help="Hypernetwork with bias (Table 1 ablation).")
@click.option("--compressed", is_flag=True, help="Seeded frozen embeddings (section 5.3).")
@click.option("--embedding-seed", default=0, show_default=True, help="Seed of the frozen embeddings of --compressed.")
@click.option("--split", default="train", show_default=True, help="Split whose classes are learned.")
@click.option("--eval-split", default=None, help="Split to validate on with the same classes (default: test for cifar10/100).")
@click.option("--val-fraction", default=0.1, show_default=True, help="Held-out images per class for validation when there is no --eval-split.")
@click.option("--image-size", default=None, type=int, help="Resize images to this size (default: the cache's).")
@click.option("--epochs", default=200, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=0.1, show_default=True)
@click.option("--momentum", default=0.9, show_default=True)
@click.option("--milestones", default="60,120,160", show_default=True, help="Epochs at which the lr is multiplied by --gamma.")
@click.option("--gamma", default=0.2, show_default=True)
@click.option("--weight-decay", default=5e-4, show_default=True, help="On plain weights (not embeddings / hypernetworks).")
@click.option("--generated-l2", default=6.25e-5, show_default=True, help="L2 on generated weights (hyper models).")
@click.option("--augment/--no-augment", default=True, show_default=True, help="Random crop + horizontal flip.")
@click.option("--swa-start", default=None, type=int, help="Epoch from which to average weights (SWA).")
@click.option("--swa-lr", default=0.05, show_default=True)
@click.option("--save-every", default=1, show_default=True, help="Epochs between resumable checkpoints.")
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last.pt left it.")
@_seed_opt
@_device_opt
@_root_opt
@_quiet_opt
def pretrain_cmd(dataset, model, out, variant, d, hyper_bias, compressed, embedding_seed, split, eval_split, val_fraction,
                 image_size, epochs, batch_size, lr, momentum, milestones, gamma, weight_decay, generated_l2, augment,
                 swa_start, swa_lr, save_every, workers, resume, seed, device, data_root, quiet) -> None:
    """Classification training (paper sections 4.2 and 5.1): SGD + step schedule, optional SWA."""
    from metahyper.config import PretrainConfig
    from metahyper.train.pretrain import pretrain
    from metahyper.train.distributed import distributed_session

    if eval_split is None and dataset in ("cifar10", "cifar100"):
        eval_split = "test"
    cfg = PretrainConfig(dataset=dataset, out=out, model=model, variant=variant, d=d, hyper_bias=hyper_bias, compressed=compressed,
                         embedding_seed=embedding_seed, split=split, eval_split=eval_split, val_fraction=val_fraction,
                         image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                         milestones=_ints(milestones), gamma=gamma, weight_decay=weight_decay, generated_l2=generated_l2,
                         augment=augment, swa_start=swa_start, swa_lr=swa_lr, seed=seed, device=device, num_workers=workers,
                         save_every=save_every, data_root=data_root, resume=resume, progress=not quiet)
    with distributed_session(device) as ctx:
        summary = pretrain(cfg, ctx)
    if not ctx.is_main:
        return
    best = summary.get("swa_val_acc") if summary.get("swa_val_acc") is not None else summary["best_val_acc"]
    shown = f"validation accuracy {100 * best:.2f} %" if best is not None else "no validation set"
    click.echo(f"pretrained {summary['model']} for {cfg.epochs} epochs: {shown}; run in {out}")


@main.command("meta-train")
@click.option("--train", "train", required=True, help="Dataset whose train split gives the meta-training tasks.")
@click.option("--test", "test", required=True, help="Dataset whose val split validates (cross-domain: another dataset).")
@click.option("--init", "init", required=True, type=click.Path(path_type=str), help="Pretrain run directory or checkpoint.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str), help="Run directory.")
@click.option("--ways", default=5, show_default=True)
@click.option("--shots", default=1, show_default=True)
@click.option("--queries", default=15, show_default=True, help="Query images per class.")
@click.option("--meta-batch", default=4, show_default=True, help="Tasks per meta-batch.")
@click.option("--iterations", default=5000, show_default=True)
@click.option("--inner-steps", default=5, show_default=True, help="Inner SGD steps in meta-training.")
@click.option("--inner-steps-eval", default=10, show_default=True, help="Inner SGD steps at validation / test.")
@click.option("--inner-lr", default=0.01, show_default=True)
@click.option("--outer-lr", default=1e-3, show_default=True)
@click.option("--lr-halve-every", default=1000, show_default=True, help="Halve the outer lr every this many iterations ...")
@click.option("--min-lr", default=1e-4, show_default=True, help="... down to this.")
@click.option("--first-order", is_flag=True, help="First-order MAML (default: second order).")
@click.option("--bn", default="transductive", show_default=True, type=click.Choice(["transductive", "frozen"]), help="BatchNorm inside tasks: batch statistics, or the pretrained running statistics.")
@click.option("--backend", default="func", show_default=True, type=click.Choice(["func", "vmap", "higher", "stock_higher"]), help="Inner-loop implementation.")
@click.option("--task-threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Run this many tasks of a meta-batch at once on threads (func backend; CPU: faster, memory x this).")
@click.option("--autocast", default=None, type=click.Choice(["bf16"]),
              help="bfloat16 autocast of every forward (GPUs; CPUs with bf16 units). Meta-gradients move by bf16 rounding.")
@click.option("--inner", default=None, help="Groups adapted in the inner loop, e.g. embeddings,classifier (default: by model kind).")
@click.option("--outer", default=None, help="Groups learned in the outer loop, e.g. hypernetworks,classifier,backbone.")
@click.option("--val-every", default=500, show_default=True, help="Validate every this many iterations (0: never).")
@click.option("--val-episodes", default=300, show_default=True)
@click.option("--val-seed", default=0, show_default=True, help="Seed of the fixed validation episodes.")
@click.option("--image-size", default=None, type=int, help="Input size (default: the size the --init model was trained at).")
@click.option("--save-every", default=100, show_default=True, help="Iterations between resumable checkpoints.")
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes for episodes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly (same episodes, optimiser and RNG state).")
@_seed_opt
@_device_opt
@_root_opt
@_quiet_opt
def meta_train_cmd(train, test, init, out, ways, shots, queries, meta_batch, iterations, inner_steps, inner_steps_eval, inner_lr,
                   outer_lr, lr_halve_every, min_lr, first_order, bn, backend, task_threads, autocast, inner, outer, val_every, val_episodes,
                   val_seed, image_size, save_every, workers, resume, seed, device, data_root, quiet) -> None:
    """MAML from a pretrained backbone (Algorithms 1 and 2), validating on another dataset."""
    from metahyper.config import MetaTrainConfig
    from metahyper.train.meta_train import meta_train
    from metahyper.train.distributed import distributed_session

    cfg = MetaTrainConfig(train=train, test=test, init=init, out=out, ways=ways, shots=shots, queries=queries, meta_batch=meta_batch,
                          iterations=iterations, inner_steps=inner_steps, inner_steps_eval=inner_steps_eval, inner_lr=inner_lr,
                          outer_lr=outer_lr, lr_halve_every=lr_halve_every, min_lr=min_lr, first_order=first_order, bn=bn,
                          backend=backend, task_threads=task_threads, autocast=autocast,
                          inner=_groups(inner), outer=_groups(outer), val_every=val_every,
                          val_episodes=val_episodes, val_seed=val_seed, image_size=image_size, seed=seed, device=device,
                          num_workers=workers, save_every=save_every, data_root=data_root, resume=resume, progress=not quiet)
    with distributed_session(device) as ctx:
        summary = meta_train(cfg, ctx)
    if not ctx.is_main:
        return
    best = summary["best_val_acc"]
    shown = f"best validation {100 * best:.2f} %" if best is not None else "no validation"
    click.echo(f"meta-trained {summary['model']} for {iterations} iterations: {shown}; run in {out}")


@main.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(path_type=str), help="Run directory (best.pt, else last.pt) or .pt file.")
@click.option("--dataset", required=True)
@click.option("--shots", required=True, type=int)
@click.option("--ways", default=5, show_default=True)
@click.option("--queries", default=15, show_default=True)
@click.option("--episodes", default=600, show_default=True)
@click.option("--split", default="test", show_default=True)
@click.option("--method", default="auto", show_default=True, type=click.Choice(["auto", "maml", "linear"]),
              help="maml: adapt the inner groups; linear: frozen features + fitted head (pretrain-only baseline); auto: by checkpoint.")
@click.option("--inner-steps", default=None, type=int, help="Default: the run's --inner-steps-eval.")
@click.option("--inner-lr", default=None, type=float, help="Default: the run's.")
@click.option("--bn", default=None, type=click.Choice(["transductive", "frozen"]), help="Default: the run's.")
@click.option("--backend", default="func", show_default=True, type=click.Choice(["func", "vmap", "higher", "stock_higher"]))
@click.option("--task-threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Score this many episodes at once on threads (--method maml, func backend).")
@click.option("--head-steps", default=100, show_default=True, help="Adam steps of the linear head (--method linear).")
@click.option("--head-lr", default=0.01, show_default=True)
@click.option("--image-size", default=None, type=int, help="Default: the size the model was trained at.")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False, path_type=str), help="JSON file (default: beside the checkpoint).")
@_seed_opt
@_device_opt
@_root_opt
@_quiet_opt
def eval_cmd(checkpoint, dataset, shots, ways, queries, episodes, split, method, inner_steps, inner_lr, bn, backend, task_threads, head_steps,
             head_lr, image_size, output, seed, device, data_root, quiet) -> None:
    """Few-shot accuracy on seeded episodes: mean +- 1.96 std / sqrt(n) (same seed: same episodes)."""
    from metahyper.config import EvalConfig
    from metahyper.train.evaluate import evaluate
    from metahyper.train.distributed import distributed_session

    cfg = EvalConfig(checkpoint=checkpoint, dataset=dataset, shots=shots, ways=ways, queries=queries, episodes=episodes, split=split,
                     seed=seed, method=method, inner_steps=inner_steps, inner_lr=inner_lr, bn=bn, backend=backend,
                     task_threads=task_threads,
                     head_steps=head_steps, head_lr=head_lr, image_size=image_size, device=device, output=output,
                     data_root=data_root, progress=not quiet)
    with distributed_session(device) as ctx:
        result = evaluate(cfg, ctx)
    if not ctx.is_main:
        return
    click.echo(result.line())
    click.echo(f"wrote {result.settings['output']}")


@main.command("movement-plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("-o", "--output", default="movement.png", show_default=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--layer", "layers", multiple=True, help="Layer to plot, e.g. stages.1.1.conv2 (repeatable; default: all that move).")
@click.option("--paper-layers", is_flag=True, help="The paper's three Figure 4 layers.")
@click.option("--smooth", default=1, show_default=True, help="Moving-average window (iterations).")
def movement_plot_cmd(runs, output, layers, paper_layers, smooth) -> None:
    """Inner-loop weight movement per iteration (paper Figure 4), one line per meta-train run."""
    from metahyper.plots import movement_plot

    click.echo(f"wrote {movement_plot(runs, output, list(layers) or None, smooth=smooth, paper_layers=paper_layers)}")


@main.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("-o", "--output", default="curves.png", show_default=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--ratio-group", default=None, type=click.Choice(["embeddings", "hypernetworks", "backbone", "classifier"]),
              help="Group of the ||P||/||grad P|| panel (default: embeddings for hyper runs, backbone for plain).")
@click.option("--smooth", default=20, show_default=True, help="Moving-average window of the meta-training loss.")
def curves_cmd(runs, output, ratio_group, smooth) -> None:
    """Validation / loss curves (Figures 3 and 5) and the norm / gradient-norm ratios (Figure 2)."""
    from metahyper.plots import curves_plot

    click.echo(f"wrote {curves_plot(runs, output, ratio_group=ratio_group, smooth=smooth)}")


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--force", is_flag=True, help="Replace an earlier demo in --out.")
@click.option("--pretrain-epochs", default=None, type=int, help="Default 6.")
@click.option("--meta-iterations", default=None, type=int, help="Default 60.")
@click.option("--eval-episodes", default=None, type=int, help="Default 100.")
@click.option("--second-order", is_flag=True, help="Second-order MAML (slower; the demo default is first order).")
@click.option("--threads", default=1, show_default=True, help="CPU threads (more rarely helps these tiny models).")
@_seed_opt
@_device_opt
@_root_opt
@_quiet_opt
def demo_cmd(out, force, pretrain_epochs, meta_iterations, eval_episodes, second_order, threads, seed, device, data_root, quiet) -> None:
    """The whole pipeline on the built-in glyphs: plain WRN vs hyper WRN, Table-8-style summary."""
    from metahyper.config import DemoConfig
    from metahyper.train.demo import run_demo

    cfg = DemoConfig(out=out, seed=seed, device=device, data_root=data_root, threads=threads, progress=not quiet)
    for name, value in (("pretrain_epochs", pretrain_epochs), ("meta_iterations", meta_iterations), ("eval_episodes", eval_episodes)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.first_order = not second_order
    run_demo(cfg, force=force, echo=click.echo)
