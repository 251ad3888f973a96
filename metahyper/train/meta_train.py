"""MAML meta-training from a pretrained backbone (paper section 4, Algorithms 1 and 2; section 5.4).

1. Load the pretrained model (``--init``) and replace its classifier by a fresh N-way linear layer
   (section 4.2).
2. Each iteration ``j`` takes the meta-batch of episodes ``j*B .. j*B+B-1`` of the training
   dataset's train split (:func:`metahyper.data.meta_batches`): fixed N-way K-shot episodes, or with
   ``--episodes variable`` Meta-Dataset's variable-way variable-shot ones
   (:class:`~metahyper.data.variable_episodes.VariableEpisodeSampler`; heads ``zero`` / ``proto``
   only); several ``--train`` datasets (``md-all``: Meta-Dataset's 8 training sources) draw each
   episode's source per episode (:class:`~metahyper.data.variable_episodes.MultiSourceSampler`).
   The splits are loaded into memory or read in place (``--in-memory``,
   :func:`~metahyper.data.load_splits`: the same episodes either way). It adapts the inner groups on each
   support set and accumulates the meta-gradient of the mean query loss over the B tasks into the
   outer groups (:meth:`metahyper.meta.MAML.meta_step`); Adam steps, the learning rate halves every
   ``lr_halve_every`` iterations down to ``min_lr``. Plain models: every parameter in both loops
   (Algorithm 1). Hyper models: embeddings + classifier adapt in the inner loop, hypernetworks +
   classifier learn in the outer loop (Algorithm 2); the paper is silent on the other plain layers
   (stem, stage-first convs of variant 1, shortcuts, BatchNorm): by default they learn in the outer
   loop and do not adapt (:mod:`metahyper.meta.maml`). ``--inner`` / ``--outer`` change both sets.
3. Every ``val_every`` iterations: accuracy on fixed episodes of the val split of the training
   dataset (the source; each of several) and of every ``--test`` dataset (mean +- 95% CI each;
   Figure 5 curves), episodes of the training kind. ``best.pt`` is the model selected by
   ``--select-on``: best on the source's val classes (default; several sources: the mean of their
   accuracies), best on the first ``--test`` dataset's val classes (``target``), or the final model
   (``last``); its ``selection`` entry records the rule, dataset and iteration. With
   ``--select-on source`` the ``--test`` datasets are monitored only: they never change which
   model is kept, and without ``--test`` no other dataset is opened.
4. Per iteration: query loss / accuracy and, per 3x3 stage conv, the inner-loop weight movement
   ``||W_adapted - W||`` averaged over the tasks (generated weights for hyper layers, raw weights for
   plain ones; section 5.4, Figure 4).

The loop, resume and logging are :class:`~metahyper.train.trainer.Trainer`'s; the checkpoints
record the meta-learner as :class:`~metahyper.meta.MamlSettings` (``extra["maml"]``) and its learned
state (``extra["inner_rule"]``: the inner rule's ``state_dict``).

Run directory: ``config.json``, ``best.pt``, ``last.pt`` (resumable every ``save_every``
iterations: model, Adam, schedule, RNG state, iteration, curves), ``log.jsonl`` and, with
``--tensorboard``, ``tensorboard/`` (the logged scalars), ``train.csv`` (per-iteration
loss, accuracy, lr), ``movement.csv`` (per-iteration movement per layer), ``val.csv`` /
``curves.json`` (validation points: ``val_acc`` / ``val_ci95`` of the selection dataset, the source
for ``last``, and ``<dataset>_acc`` / ``<dataset>_ci95`` per validated dataset), ``summary.json``.
Distributed (``torchrun``): the tasks of a meta-batch are sharded over ranks by global episode
index, each backpropagates ``loss / B`` and the meta-gradients are summed (per-step BatchNorm
statistics, recorded per rank, are averaged after each meta-step); only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import torch

from metahyper.config import AUTOCAST, FIXED_EPISODES, MetaTrainConfig
from metahyper.errors import UserError
from metahyper.meta import MamlSettings, make_outer_optimizer
from metahyper.meta.msl import msl_weights
from metahyper.models import WeightMovement, per_step_batchnorm, resolve_groups
from metahyper.progress import progress_bar
from metahyper.train.checkpoint import Checkpoint, load_checkpoint
from metahyper.train.distributed import DistContext, all_reduce_grads, all_reduce_sum, average_per_step_statistics
from metahyper.train.evaluate import episode_accuracies, mean_ci
from metahyper.train.memory import check_step, task_alive
from metahyper.train.meta_learner import build_maml
from metahyper.train.run import check_finite, loss_bound
from metahyper.train.trainer import Trainer, TrainState


def meta_train(cfg: MetaTrainConfig, ctx: DistContext | None = None, on_step=None) -> dict:
    """Meta-train as configured; returns a summary (best validation accuracy, paths).
    ``on_step(iteration)`` is called before each iteration (0-based; after everything up to it
    has been written)."""
    return MetaTrainer(cfg, ctx, on_step).fit()


class MetaTrainer(Trainer):
    """MAML meta-training (module docstring)."""

    stage = "meta-train"
    cfg: MetaTrainConfig

    def check(self) -> None:
        if self.cfg.meta_batch < self.ctx.world_size:
            raise UserError(
                f"--meta-batch {self.cfg.meta_batch} is smaller than the {self.ctx.world_size} processes; "
                "every process needs a task"
            )

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        init = load_checkpoint(cfg.init)
        if init.extra.get("stage") == "meta-train":
            raise UserError(
                f"--init {cfg.init} is a meta-trained run; pass a pretrain run "
                "(or use --resume to continue meta-training)"
            )
        self.image_size = cfg.image_size if cfg.image_size is not None else init.extra.get("input_size")
        self._open_data()
        self._check_memory(init)
        self._load_data()
        self._build(init)
        n, layers = cfg.iterations, self.movement.layers
        curves = {k: torch.zeros(n, dtype=torch.float64) for k in ("loss", "acc", "lr")}
        curves["movement"] = torch.zeros(n, len(layers), dtype=torch.float64)
        objects = {"optimizer": self.optimizer, "scheduler": self.scheduler}
        self.state = TrainState("iteration", objects, {"curves": curves, "val_history": []})
        self.total = n
        self.info = {
            "stage": "meta-train",
            "input_size": self.image_size,
            "train_dataset": cfg.train,
            "train_datasets": cfg.train_sources(),
            "episodes": cfg.episodes,
            "test_datasets": list(cfg.test),
            "pretrain": str(init.path),
            "maml": self.settings.to_dict(),
            "layers": layers,
        }

    def _check_memory(self, init: Checkpoint) -> None:
        """Refuse a meta-batch that cannot fit, before anything large is allocated."""
        cfg = self.cfg
        ways, support, query = self.largest
        tasks = -(-cfg.meta_batch // self.ctx.world_size)
        task_images = support + query
        up_to = "" if self.fixed_one else "up to "  # variable or several sources: the largest possible episode
        second_order_graphs = 2 * (cfg.inner_steps + 1)  # second order keeps every step
        second_order_graphs += cfg.inner_steps if cfg.msl_epochs else 0  # and the multi-step loss every query
        graphs = 2 if cfg.first_order or cfg.inner_checkpoint else second_order_graphs
        chunk = cfg.support_chunk if cfg.first_order or cfg.inner_checkpoint else 0  # else every chunk's graph is kept
        check_step(
            "meta-training",
            dataclasses.replace(
                init.model_config, num_classes=ways, bn_steps=cfg.inner_steps + 1 if cfg.per_step_bn else 0
            ),
            self.image_size,
            task_images,
            f"meta-batches of {tasks} tasks of {up_to}{task_images} images",
            "lower --meta-batch, --shots/--queries, --inner-steps or --image-size (or use --inner-checkpoint; "
            "with --first-order, --support-chunk), or --iterations",
            self.device,
            states=6,
            held_images=(tasks - 1) * task_images,
            logged_steps=cfg.iterations,
            alive=task_alive(support, query, graphs, chunk=chunk, prototypes=cfg.head == "proto"),
        )

    def _open_data(self) -> None:
        """The training sampler (several sources: :class:`MultiSourceSampler`) and one sampler per
        validated domain, on the caches as they lie (what their files declare; no image read), and
        ``largest``: bounds of any of their episodes' ``(ways, support, query)`` images."""
        from metahyper.data import open_split
        from metahyper.data.variable_episodes import MultiSourceSampler

        cfg = self.cfg
        sources = cfg.train_sources()
        self.fixed_one = cfg.episodes == "fixed" and len(sources) == 1  # EpisodeSampler, as always
        parts = [self._sampler(open_split(d, "train", root=cfg.data_root), cfg.seed) for d in sources]
        several = len(parts) > 1
        self.sampler = MultiSourceSampler(parts, seed=cfg.seed, weights=cfg.source_weights) if several else parts[0]
        self.val_samplers = {}
        if cfg.val_every and cfg.val_episodes:
            for domain in cfg.validation_domains():
                self.val_samplers[domain] = self._sampler(open_split(domain, "val", root=cfg.data_root), cfg.val_seed)
        self.splits = [s.data for s in (*parts, *self.val_samplers.values())]
        bounds = [self._largest(s) for s in (self.sampler, *self.val_samplers.values())]
        self.largest = tuple(max(b[k] for b in bounds) for k in range(3))
        self.primary = cfg.selection_domain() or cfg.train  # val_acc of the logs; the sources when nothing is selected
        self.averaged = cfg.selection_domains()  # val_acc is their mean

    def _sampler(self, data, seed: int):
        """Episodes of one split: :class:`EpisodeSampler` (fixed episodes of one source, as
        always), else :class:`VariableEpisodeSampler` (Meta-Dataset's episodes, with the counts of
        ``--ways`` / ``--shots`` / ``--queries`` given fixed; or with ``--episodes fixed`` the same
        fixed episodes as :class:`EpisodeSampler`, which :class:`MultiSourceSampler` takes)."""
        from metahyper.data import EpisodeSampler
        from metahyper.data.variable_episodes import VariableEpisodeSampler

        cfg = self.cfg
        if not self.fixed_one:
            return VariableEpisodeSampler(data, cfg.ways, cfg.shots, cfg.queries, seed=seed, image_size=self.image_size)
        return EpisodeSampler(data, cfg.ways, cfg.shots, cfg.queries, seed=seed, image_size=self.image_size)

    def _largest(self, sampler) -> tuple[int, int, int]:
        """Bounds of ``sampler``'s episodes' ``(ways, support, query)`` images."""
        if hasattr(sampler, "largest_episode"):
            return sampler.largest_episode()
        cfg = self.cfg
        return cfg.ways, cfg.ways * cfg.shots, cfg.ways * cfg.queries

    def _load_data(self) -> None:
        """Every split into memory or read in place, as ``--in-memory`` says
        (:func:`~metahyper.data.load_splits`: same episodes either way)."""
        from metahyper.data import load_splits

        load_splits(self.splits, self.cfg.in_memory, self.ctx.world_size)

    def _build(self, init: Checkpoint) -> None:
        """The model with a fresh N-way head (section 4.2), its MAML, the outer optimiser."""
        cfg = self.cfg
        model = init.build_model()
        model.reset_classifier(cfg.ways or FIXED_EPISODES["ways"])  # updates model.config; variable ways: unused
        if cfg.per_step_bn:  # MAML++: every step's BatchNorm starts as the pretrained one
            per_step_batchnorm(model, cfg.inner_steps + 1)
            model.config = dataclasses.replace(model.config, bn_steps=cfg.inner_steps + 1)
        self.model = model.to(self.device)
        groups = resolve_groups(model, cfg.inner, cfg.outer)
        self.settings = MamlSettings(
            inner=groups.inner_groups,
            outer=groups.outer_groups,
            inner_rule=cfg.inner_rule,
            inner_lr=cfg.inner_lr,
            inner_steps=cfg.inner_steps,
            eval_inner_steps=cfg.eval_inner_steps,
            first_order=cfg.first_order,
            bn=cfg.bn,
            inner_checkpoint=cfg.inner_checkpoint,
            ways=cfg.ways,
            shots=cfg.shots,
            head=cfg.head,
            algorithm=cfg.algorithm,
            support_chunk=cfg.support_chunk,
        )
        self.maml = build_maml(model, self.settings, cfg.backend, AUTOCAST[cfg.autocast])
        if cfg.inner_checkpoint and cfg.first_order and self.is_main:
            warnings.warn(
                "--inner-checkpoint changes nothing with --first-order (first order keeps no inner-loop graph)",
                stacklevel=2,
            )
        self.outer = self.maml.outer_parameters()
        self.optimizer, self.scheduler = make_outer_optimizer(
            self.outer, cfg.outer_lr, cfg.lr_halve_every, cfg.min_lr, cfg.lr_schedule, total=cfg.iterations
        )
        self.movement = WeightMovement(model)  # Figure 4, observed per task of each meta-step

    # -- the loop ----------------------------------------------------------------------------------

    def start(self) -> None:
        from metahyper.data import meta_batches

        super().start()
        self.resumed_at = self.state.done
        cfg, ctx = self.cfg, self.ctx
        batches = meta_batches(
            self.sampler,
            cfg.meta_batch,
            start=self.state.done,
            num_batches=self.total - self.state.done,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        show = cfg.progress and self.is_main
        self.bar = progress_bar(
            batches, initial=self.state.done, total=self.total, desc="meta-train", unit="it", disable=not show
        )
        self.batches = iter(self.bar)

    def restore(self, extra: dict[str, Any]) -> None:
        super().restore(extra)
        self.maml.inner_rule.load_state_dict(extra.get("inner_rule", {}))

    def step(self, it: int) -> None:
        cfg, curves = self.cfg, self.state.logs["curves"]
        tasks = [t.to(self.device, non_blocking=True) for t in next(self.batches)]
        self.optimizer.zero_grad(set_to_none=True)
        first_order = cfg.first_order or it < cfg.first_order_iterations  # MAML++'s derivative-order annealing
        weights = msl_weights(cfg.inner_steps, it // cfg.iterations_per_epoch, cfg.msl_epochs)
        result = self.maml.meta_step(
            tasks, first_order=first_order, loss_scale=1.0 / cfg.meta_batch, observers=[self.movement],
            step_weights=weights,
        )  # fmt: skip
        moves = self.movement.pop()
        all_reduce_grads(self.outer, self.ctx)
        average_per_step_statistics(self.model, self.ctx)
        curves["lr"][it] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        # log the means over the whole meta-batch (under torchrun: over every rank's tasks)
        layers = self.movement.layers
        local = torch.tensor([result.loss, result.accuracy, *(moves[k] for k in layers), 1.0], dtype=torch.float64)
        stats = all_reduce_sum(local * result.num_tasks, self.ctx)
        stats = stats[:-1] / stats[-1]
        curves["loss"][it], curves["acc"][it], curves["movement"][it] = stats[0], stats[1], stats[2:]
        done = it + 1
        validating = bool(self.val_samplers) and (done % cfg.val_every == 0 or done == self.total)
        saving = done % cfg.save_every == 0 or done == self.total
        loss = curves["loss"][it].item()
        model = self.model if validating or saving else None
        check_finite(f"iteration {done}", "lower --outer-lr / --inner-lr", loss, model, loss_bound(self.largest[0]))
        moved = {f"movement/{k}": v for k, v in zip(layers, stats[2:].tolist())}
        self.log.scalars(done, {"loss": loss, "acc": stats[1].item(), "lr": curves["lr"][it].item(), **moved}, "train/")
        if it % 5 == 0 or done == self.total:
            recent = slice(max(0, done - 20), done)
            self.bar.set_postfix(
                loss=f"{curves['loss'][recent].mean():.3f}", acc=f"{100 * curves['acc'][recent].mean():.1f}%"
            )
        if validating:
            self.validate(done)

    def validate(self, done: int) -> None:
        """Accuracy on every validated domain's fixed episodes; ``best.pt`` when the selection
        domain improves."""
        cfg, curves = self.cfg, self.state.logs["curves"]
        row: dict[str, Any] = {"iteration": done}
        for domain, sampler in self.val_samplers.items():
            accs = episode_accuracies(
                self.maml.evaluate_tasks,
                sampler,
                range(cfg.val_episodes),
                self.device,
                self.ctx,
                cfg.progress,
                desc=f"validate {domain}",
            )
            row[f"{domain}_acc"], row[f"{domain}_ci95"] = mean_ci(accs)
        mean, ci = self._selected(row)
        window = slice(max(0, done - cfg.val_every), done)
        row.update(
            val_acc=mean,
            val_ci95=ci,
            train_loss=curves["loss"][window].mean().item(),
            train_acc=curves["acc"][window].mean().item(),
            lr=curves["lr"][done - 1].item(),
        )
        self.state.logs["val_history"].append(row)
        self.log.scalars(done, {k: v for k, v in row.items() if k != "iteration"}, prefix="val/")
        if cfg.select_on != "last" and mean > self.state.best:
            self.state.best = mean
            self.save_model(
                "best.pt", iteration=done, val_acc=mean, val_ci95=ci, selection=self.selection(done, mean, ci)
            )
        shown = ", ".join(
            f"{d} {100 * row[f'{d}_acc']:.2f} +- {100 * row[f'{d}_ci95']:.2f} %" for d in self.val_samplers
        )
        best = f" (best on {self.primary} {100 * self.state.best:.2f} %)" if cfg.select_on != "last" else ""
        self.log.message(f"iteration {done}: val {shown}{best}")

    def _selected(self, row: dict[str, Any]) -> tuple[float, float]:
        """``val_acc`` and ``val_ci95``: one domain's; of several, the mean of their accuracies and
        its 95% half-width from theirs (independent episodes: ``sqrt(sum ci^2) / k``)."""
        if len(self.averaged) == 1:
            return row[f"{self.averaged[0]}_acc"], row[f"{self.averaged[0]}_ci95"]
        accs = [row[f"{d}_acc"] for d in self.averaged]
        cis = [row[f"{d}_ci95"] for d in self.averaged]
        return sum(accs) / len(accs), math.sqrt(sum(c * c for c in cis)) / len(cis)

    def selection(self, done: int, mean: float | None, ci: float | None) -> dict[str, Any]:
        """How ``best.pt`` was chosen (``extra["selection"]``)."""
        return {
            "rule": self.cfg.select_on,
            "dataset": self.cfg.selection_domain(),
            "datasets": self.averaged if self.cfg.select_on != "last" else None,
            "split": "val" if mean is not None else None,
            "iteration": done,
            "val_acc": mean,
            "val_ci95": ci,
        }

    def save_model(self, name: str, **extra: Any) -> None:
        """A model checkpoint with the run's ``info`` and the inner rule's learned state."""
        self.run.save(name, self.model, **{**self.info, "inner_rule": self.maml.inner_rule.state_dict()}, **extra)

    def save(self) -> None:
        self.info["inner_rule"] = self.maml.inner_rule.state_dict()
        super().save()

    def save_logs(self) -> None:
        done, curves, layers = self.state.done, self.state.logs["curves"], self.movement.layers
        rows = [
            {
                "iteration": i + 1,
                "loss": curves["loss"][i].item(),
                "acc": curves["acc"][i].item(),
                "lr": curves["lr"][i].item(),
            }
            for i in range(done)
        ]
        self.run.write_csv("train.csv", rows, ["iteration", "loss", "acc", "lr"])
        move = curves["movement"][:done].tolist()
        self.run.write_csv(
            "movement.csv",
            [{"iteration": i + 1, **dict(zip(layers, r))} for i, r in enumerate(move)],
            ["iteration", *layers],
        )
        history = self.state.logs["val_history"]
        per_domain = [f"{d}_{k}" for d in self.val_samplers for k in ("acc", "ci95")]
        self.run.write_csv(
            "val.csv", history, ["iteration", "val_acc", "val_ci95", *per_domain, "train_loss", "train_acc", "lr"]
        )
        self.run.write_json(
            "curves.json",
            {
                "model": self.model.config.label(),
                "ways": self.cfg.ways,
                "shots": self.cfg.shots,
                "episodes": self.cfg.episodes,
                "validation": history,
                "layers": layers,
                "val_on": self.primary,
                "validated": list(self.val_samplers),
                "select_on": self.cfg.select_on,
            },
        )

    def finish(self) -> dict[str, Any]:
        cfg, n, history = self.cfg, self.total, self.state.logs["val_history"]
        self.bar.close()
        if self.is_main and self.resumed_at >= n:  # resumed a finished run: nothing to do but rewrite the logs
            self.save_logs()
        if cfg.select_on == "last":
            self.save_model("best.pt", iteration=n, selection=self.selection(n, None, None))
            selected = self.selection(n, None, None)
        elif history:
            top = next(r for r in history if r["val_acc"] == self.state.best)
            selected = self.selection(top["iteration"], top["val_acc"], top["val_ci95"])
        else:
            selected = None
        acc = self.state.logs["curves"]["acc"]
        return {
            "out": str(self.run.path),
            "model": self.model.config.label(),
            "iterations": n,
            "best_val_acc": self.state.best if history and cfg.select_on != "last" else None,
            "selection": selected,
            "final_validation": history[-1] if history else None,
            "train_acc_last": acc[max(0, n - 20) : n].mean().item(),
        }
