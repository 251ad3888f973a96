"""Few-shot evaluation on seeded episodes: mean accuracy +- 95% confidence interval.

The protocol of the literature (the paper reports Tables 7-8 without stating it): N-way K-shot
test episodes with 15 queries per class (the paper's "15 test samples per class" of meta-training,
section 5.4), accuracy averaged over ``n`` episodes (600 by default, as MAML and Sun et al.) and
reported as
``mean +- 1.96 * std / sqrt(n)`` (std over episodes, ``ddof=0`` as the common MAML / ProtoNet
evaluation code). Episode ``i`` depends only on ``(seed, i)`` (:class:`metahyper.data.EpisodeSampler`),
so every checkpoint evaluated with the same seed, dataset, ways, shots and queries sees the same
tasks: hyper and plain networks are compared on identical episodes. The episodes' identity is
recorded as a fingerprint in the JSON.

Methods:

* ``maml``: adapt the checkpoint's inner groups on the support set (``--inner-steps``, default the
  run's ``--inner-steps-eval``), score the query set (:meth:`metahyper.meta.MAML.evaluate`);
* ``linear`` (the pretrain-only baseline): freeze the backbone, compute features (BatchNorm with
  the pretrained running statistics), fit a fresh zero-initialised N-way linear head on the support
  features (``head_steps`` full-batch Adam steps, lr ``head_lr``) and score the query set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metahyper.config import EvalConfig
from metahyper.errors import UserError
from metahyper.io import read_json, write_json
from metahyper.meta import MAML, MamlSettings
from metahyper.models import resolve_groups, to_plain
from metahyper.progress import progress_bar
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.distributed import DistContext, all_gather_list, resolve_device, shard
from metahyper.train.memory import check_step, task_alive
from metahyper.train.meta_learner import build_maml
from metahyper.train.outputs import check_output
from metahyper.train.run import CONFIG_FILE, config_dict


def mean_ci(accuracies: Sequence[float]) -> tuple[float, float]:
    """``(mean, 1.96 * std / sqrt(n))`` of per-episode accuracies (std with ddof=0)."""
    a = np.asarray(accuracies, dtype=np.float64)
    if a.size == 0:
        raise UserError("no episodes to average; use --episodes >= 1")
    return float(a.mean()), float(1.96 * a.std() / math.sqrt(a.size))


def episodes_fingerprint(sampler, indices: Sequence[int]) -> str:
    """SHA-256 of the (class, image) indices of the given episodes: equal iff same tasks. A
    :class:`~metahyper.data.variable_episodes.VariableEpisodeSampler` (it has ``plan``) is hashed
    from each ``plan(i)``: its classes, shots per class, queries and every class's image indices."""
    h = hashlib.sha256()
    for i in indices:
        if hasattr(sampler, "plan"):
            plan = sampler.plan(i)
            parts = [plan.classes, plan.shots, [plan.queries], *plan.images]
        else:
            parts = sampler.draw(i)
        for part in parts:
            h.update(np.asarray(part, dtype=np.int64).tobytes())
    return h.hexdigest()


def episode_accuracies(
    score: Callable[[list], list[float]],
    sampler,
    indices: Sequence[int],
    device: torch.device,
    ctx: DistContext | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> list[float]:
    """``score(episodes)`` (a list in, one accuracy each out, e.g. :meth:`MAML.evaluate_tasks`)
    over the episode indices, one at a time, in index order. Under ``torchrun`` each rank scores
    its shard of the indices and the results are gathered (rank order = index order)."""
    ctx = ctx or DistContext(device=device)
    mine = shard(list(indices), ctx)
    out: list[float] = []
    with progress_bar(
        total=len(mine), desc=desc, unit="ep", disable=not (progress and ctx.is_main), leave=False
    ) as bar:
        for i in mine:
            out.extend(float(a) for a in score([sampler.episode(i).to(device)]))
            bar.update(1)
    return all_gather_list(out, ctx)


def linear_probe_score(model: nn.Module, episode, steps: int = 100, lr: float = 0.01) -> float:
    """Pretrain-only baseline: frozen features, a fresh zero-initialised N-way linear head fitted on
    the support set with full-batch Adam, query accuracy. Deterministic given the episode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fs = model.features(episode.support_x)
            fq = model.features(episode.query_x)
        ways = int(episode.support_y.max()) + 1
        head = nn.Linear(fs.shape[1], ways).to(fs.device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        opt = torch.optim.Adam(head.parameters(), lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(head(fs), episode.support_y).backward()
                opt.step()
        with torch.no_grad():
            return (head(fq).argmax(1) == episode.query_y).float().mean().item()
    finally:
        model.train(was_training)


@dataclass
class EvalResult:
    """One evaluation: summary numbers, per-episode accuracies and what produced them."""

    model: str
    checkpoint: str
    method: str
    dataset: str
    split: str
    ways: int
    shots: int
    queries: int
    episodes: int
    seed: int
    mean: float
    ci95: float
    accuracies: list[float]
    fingerprint: str
    settings: dict
    selection: dict

    def line(self) -> str:
        return (
            f"{self.model} [{self.method}] on {self.dataset} {self.split}, {self.ways}-way {self.shots}-shot, "
            f"{self.episodes} episodes: {100 * self.mean:.2f} +- {100 * self.ci95:.2f} %\n"
            f"scored {self.selection['checkpoint']}: {self.selection['rule_text']}"
        )

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def describe_selection(path: Path, extra: dict) -> dict:
    """Which checkpoint was scored and by which rule it was kept: ``checkpoint`` (file name),
    ``rule`` (``source`` / ``target`` / ``last`` for meta-train runs, ``pretrain-val`` for a
    pretrain ``best.pt``, ``final`` for a ``last.pt``, ``swa`` for an averaged model, else
    ``unrecorded``), ``dataset`` / ``iteration`` / ``epoch`` / ``val_acc`` where known, and
    ``rule_text``, the same in words."""
    sel = dict(extra.get("selection") or {})
    out: dict = {"checkpoint": path.name, "rule": sel.get("rule")}
    if out["rule"] in ("source", "target"):
        out.update(dataset=sel.get("dataset"), iteration=sel.get("iteration"), val_acc=sel.get("val_acc"))
        where = "the training dataset" if out["rule"] == "source" else "the target dataset"
        out["rule_text"] = (
            f"best validation accuracy on {out['dataset']} val classes ({where}, --select-on "
            f"{out['rule']}) at iteration {out['iteration']}"
        )
    elif out["rule"] == "last":
        out.update(iteration=sel.get("iteration"))
        out["rule_text"] = f"final model at iteration {out['iteration']} (--select-on last)"
    elif extra.get("swa"):
        out.update(rule="swa", epoch=extra.get("epoch"), val_acc=extra.get("val_acc"))
        out["rule_text"] = f"weight average (SWA) at epoch {out['epoch']}"
    elif path.name == "last.pt":
        out.update(rule="final", iteration=extra.get("iteration"), epoch=extra.get("epoch"))
        out["rule_text"] = "final model (last.pt; no selection)"
    elif extra.get("stage") == "pretrain" and "val_acc" in extra:
        out.update(
            rule="pretrain-val", dataset=extra.get("dataset"), epoch=extra.get("epoch"), val_acc=extra.get("val_acc")
        )
        out["rule_text"] = f"best pretraining validation accuracy on {out['dataset']} at epoch {out['epoch']}"
    else:
        out.update(rule="unrecorded", iteration=extra.get("iteration"))
        out["rule_text"] = "selection rule not recorded in the checkpoint"
    return out


def run_identity(checkpoint: Path) -> dict:
    """``run`` (the checkpoint's run directory) and ``train_seed`` (its ``config.json`` seed, None
    when there is none): what :mod:`metahyper.report` groups seeds by. A damaged ``config.json``
    is a one-line :class:`UserError`."""
    config = checkpoint.parent / CONFIG_FILE
    fix = "the run directory is damaged; restore it, or copy the checkpoint elsewhere to evaluate it alone"
    seed = read_json(config, "run config", fix, expect=dict).get("seed") if config.is_file() else None
    return {"run": str(checkpoint.parent), "train_seed": seed}


def resolve_method(cfg: EvalConfig, extra: dict) -> str:
    """``cfg.method`` with ``auto`` resolved by the checkpoint's stage (``maml`` for meta-trained
    checkpoints, ``linear`` otherwise); options the method would ignore are a :class:`UserError`
    (:meth:`~metahyper.config.EvalConfig.check_method`)."""
    method = cfg.method  # one of metahyper.config.EVAL_METHODS (checked by the config)
    if method == "auto":
        method = "maml" if extra.get("stage") == "meta-train" else "linear"
    cfg.check_method(method)
    return method


def default_output(checkpoint: Path, cfg: EvalConfig, datasets: Sequence[str], shots: Sequence[int]) -> Path:
    """``eval-<d1+d2>-<split>-<ways>w<k1+k2>s-seed<seed>.json`` beside the checkpoint (one dataset
    and one shot count: ``eval-<dataset>-<split>-<ways>w<shots>s-seed<seed>.json``)."""
    folder = Path(cfg.checkpoint) if Path(cfg.checkpoint).is_dir() else checkpoint.parent
    name = f"eval-{'+'.join(datasets)}-{cfg.split}-{cfg.ways}w{'+'.join(map(str, shots))}s-seed{cfg.seed}.json"
    return folder / name


def build_scorer(model: nn.Module, extra: dict, cfg: EvalConfig) -> tuple[str, Callable, dict]:
    """``(method, score(list of episodes) -> their accuracies, settings used)`` for a loaded checkpoint."""
    method = resolve_method(cfg, extra)
    if method == "linear":
        settings = {"head_steps": cfg.head_steps, "head_lr": cfg.head_lr, "bn": "frozen"}
        # the backbone is frozen: generate a hyper model's weights once (export), not per forward
        frozen = to_plain(model) if model.config.is_hyper else model
        return method, lambda eps: [linear_probe_score(frozen, ep, cfg.head_steps, cfg.head_lr) for ep in eps], settings
    maml, settings = _maml_scorer(model, extra, cfg)
    return method, maml.evaluate_tasks, settings


def _maml_scorer(model: nn.Module, extra: dict, cfg: EvalConfig) -> tuple[MAML, dict]:
    """The checkpoint's meta-learner (its :class:`MamlSettings` and learned inner-rule state), or
    for a pretrain-only checkpoint MAML from a fresh head with the default settings; ``--eval-inner-steps``,
    ``--inner-lr`` and ``--bn`` override."""
    meta_trained = extra.get("stage") == "meta-train"
    if meta_trained:
        stored = MamlSettings.from_dict(extra.get("maml"), f"checkpoint {cfg.checkpoint}")
    else:
        groups = resolve_groups(model)
        stored = MamlSettings(inner=groups.inner_groups, outer=groups.outer_groups)
    given = {"eval_inner_steps": cfg.eval_inner_steps, "inner_lr": cfg.inner_lr, "bn": cfg.bn, "head": cfg.head,
             "support_chunk": cfg.support_chunk}  # fmt: skip
    # evaluation keeps no graph: the training-only recompute interval would only bind the backend
    used = dataclasses.replace(stored, inner_checkpoint=0, **{k: v for k, v in given.items() if v is not None})
    heads = model.fc.out_features
    if heads != cfg.ways and used.head == "learned":  # zero and proto heads are built at each episode's width
        if meta_trained:
            raise UserError(
                f"checkpoint was meta-trained {heads}-way with a learned head; evaluate with --ways {heads}, --head "
                "zero|proto, or --method linear"
            )
        torch.manual_seed(cfg.seed)
        model.reset_classifier(cfg.ways)  # pretrain-only: MAML from a fresh head
    maml = build_maml(model, used, cfg.backend)
    if "inner_rule" in extra:
        maml.inner_rule.load_state_dict(extra["inner_rule"])
    settings = {
        "inner_steps": used.eval_inner_steps,
        "inner_lr": used.inner_lr,
        "bn": used.bn,
        "inner": list(used.inner),
        "support_chunk": used.support_chunk,
    }
    return maml, {**settings, "inner_rule": used.inner_rule, "head": used.head, "algorithm": used.algorithm,
                  "backend": cfg.backend}  # fmt: skip


def evaluate(cfg: EvalConfig, ctx: DistContext | None = None, write: bool = True) -> EvalResult:
    """Evaluate a checkpoint on ``cfg.episodes`` seeded episodes of its one dataset and shot count
    (:func:`~metahyper.train.eval_matrix.evaluate_matrix` for several); print-free (the CLI
    prints). Writes the JSON (``cfg.output`` or beside the checkpoint) on the main process."""
    cfg.validate()
    if not cfg.single:
        raise UserError(
            f"evaluate() scores one dataset and one shot count, got --dataset {','.join(cfg.dataset)} "
            f"--shots {','.join(map(str, cfg.shots))}; use evaluate_matrix() (metahyper.train.eval_matrix)"
        )
    return evaluate_one(cfg, cfg.dataset[0], cfg.shots[0], ctx, Path(cfg.output) if cfg.output else None, write)


def _check_memory(cfg: EvalConfig, ckpt, shots: int, device: torch.device) -> int | None:
    """Refuse, before anything is built, episodes of ``shots`` that would not fit the memory
    limit (:func:`check_episode_memory`); returns the input size used."""
    return check_episode_memory(cfg, ckpt, cfg.ways * shots, cfg.ways * cfg.queries, device)


def check_episode_memory(cfg: EvalConfig, ckpt, support: int, query: int, device: torch.device) -> int | None:
    """Refuse, before anything is built, episodes of ``support`` + ``query`` images that would
    not fit the memory limit (:func:`~metahyper.train.memory.check_step`); returns the input size used."""
    image_size = cfg.image_size if cfg.image_size is not None else ckpt.extra.get("input_size")
    images, alive = support + query, task_alive(support, query, 2, chunk=cfg.support_chunk or 0)
    fix = "lower --ways/--shots/--queries or --image-size (or use --support-chunk with --bn frozen)"
    check_step("evaluating", ckpt.model_config, image_size, images, f"episodes of {images} images", fix, device,
               states=4, alive=alive)  # fmt: skip
    return image_size


def evaluate_one(
    cfg: EvalConfig,
    dataset: str,
    shots: int,
    ctx: DistContext | None = None,
    output: Path | None = None,
    write: bool = True,
    data=None,
) -> EvalResult:
    """One (dataset, shots) evaluation of ``cfg.checkpoint`` (freshly loaded, so every call scores
    the same model); ``data``: the opened ``cfg.split`` of ``dataset``, to reuse across shots. The
    JSON (``output``, default :func:`default_output`) stores ``cfg`` with this dataset and shots."""
    from metahyper.data import EpisodeSampler, load_splits, open_split

    device = ctx.device if ctx is not None else resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.checkpoint)
    extra = ckpt.extra
    resolve_method(cfg, extra)
    identity = run_identity(ckpt.path)
    image_size = _check_memory(cfg, ckpt, shots, device)
    out = output or default_output(ckpt.path, cfg, [dataset], [shots])
    if write and (ctx is None or ctx.is_main):
        check_output(out, "eval")
    model = ckpt.build_model().to(device)
    if data is None:
        data = open_split(dataset, cfg.split, root=cfg.data_root)
        load_splits([data], cfg.in_memory, ctx.world_size if ctx is not None else 1)
    sampler = EpisodeSampler(data, cfg.ways, shots, cfg.queries, seed=cfg.seed, image_size=image_size)
    method, score, settings = build_scorer(model, extra, cfg)
    indices = list(range(cfg.episodes))
    accs = episode_accuracies(score, sampler, indices, device, ctx, cfg.progress, desc=f"eval {dataset} {shots}-shot")
    mean, ci = mean_ci(accs)
    result = EvalResult(
        model=ckpt.model_config.label(), checkpoint=str(ckpt.path), method=method, dataset=dataset, split=cfg.split,
        ways=cfg.ways, shots=shots, queries=cfg.queries, episodes=cfg.episodes, seed=cfg.seed, mean=mean, ci95=ci,
        accuracies=accs, fingerprint=episodes_fingerprint(sampler, indices),
        settings={**settings, "image_size": image_size, "stage": extra.get("stage"), **identity},
        selection=describe_selection(ckpt.path, extra),
    )  # fmt: skip
    if write and (ctx is None or ctx.is_main):
        result.settings["output"] = str(out)
        # "config": `eval --config FILE` repeats exactly this evaluation
        write_json(out, {**result.to_dict(), "config": {**config_dict(cfg), "dataset": dataset, "shots": shots}})
    return result
