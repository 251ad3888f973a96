"""``metahyper demo``: the whole pipeline on the built-in glyphs dataset, in minutes on a CPU.

For a small plain WRN and its hyper variant (variant 1): pretrain on ``glyphs-a`` train
(section 4.2), meta-train with MAML on ``glyphs-a`` train, keeping the model that does best on
``glyphs-a`` val (Algorithms 1 and 2; ``glyphs-b`` is opened only by the test), evaluate on
``glyphs-b`` test at 1 and 5 shots (cross-domain, like Table 8's FC100 -> MiniImageNet), plus
the pretrain-only baseline (frozen features, linear head); then the movement plot (Figure 4), the
curves (Figure 5) and a Table-8-style summary (``summary.json``, ``summary.csv``). The glyphs
cache is built in the data root if missing. The defaults are sized for a small CPU; the numbers
are a smoke test of the pipeline, not the paper's.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from metahyper.config import DemoConfig, EvalConfig, MetaTrainConfig, PretrainConfig
from metahyper.data import LAYOUTS, default_root, open_split, prepare
from metahyper.data.writing import verify_file
from metahyper.errors import UserError
from metahyper.plots import curves_plot, movement_plot
from metahyper.train.distributed import resolve_device
from metahyper.train.evaluate import evaluate
from metahyper.train.meta_train import meta_train
from metahyper.train.outputs import check_outputs
from metahyper.train.pretrain import pretrain
from metahyper.train.run import Run


def ensure_glyphs(root: Path, images_per_class: int = 20, echo: Callable[[str], None] = print) -> None:
    """Build the glyphs cache (both domains) under ``root`` when none of its files is there. An
    existing cache is used as it is, never rebuilt: a broken one is a :class:`UserError` that names
    the broken file and the command that rebuilds it."""
    layouts = [LAYOUTS[d] for d in ("glyphs-a", "glyphs-b")]
    files = [
        p for layout in layouts for s in layout.splits for p in (layout.data_file(root, s), layout.labels_file(root, s))
    ]
    if not any(p.exists() for p in files):
        echo(f"building the glyphs dataset in {root} (once) ...")
        prepare("glyphs", root=root, images_per_class=images_per_class)
        return
    fix = "rebuild it with `metahyper prepare glyphs --force`, or pass another --data-root"
    for layout in layouts:
        for split in layout.splits:
            open_split(layout.name, split, root=root).close()  # a UserError names the file and the fix
            try:
                verify_file(layout.data_file(root, split))
            except UserError as err:
                raise UserError(f"{err}; {fix}") from None


def _cell(row: dict, shots: int) -> str:
    mean, ci = row[f"{shots}shot"], row[f"{shots}shot_ci95"]
    return f"{100 * mean:.2f} +- {100 * ci:.2f}"


def _table(rows: list[dict], shots: list[int]) -> str:
    width = max(len(r["model"]) for r in rows) + 2
    head = f"{'model':<{width}}" + "".join(f"{str(k) + '-shot':>18}" for k in shots)
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<{width}}" + "".join(f"{_cell(r, k):>18}" for k in shots))
    return "\n".join(lines)


def _clear_out(cfg: DemoConfig, force: bool) -> tuple[Path, list[Path]]:
    """The demo's output folder and its per-model run folders, emptied of an earlier demo when
    ``force``; a :class:`UserError` when one is there without ``force``, the models repeat, or a
    figure the demo writes would replace a file that is not a metahyper figure."""
    out = Path(cfg.out)
    runs = [out / name for name in cfg.models]
    if any(r.exists() for r in runs) or (out / "summary.json").exists():
        if not force:
            raise UserError(f"{out} already holds a demo; pass --force to replace it or choose another --out")
        for r in runs:
            shutil.rmtree(r, ignore_errors=True)
    if len(set(cfg.models)) != len(cfg.models):
        raise UserError(f"--models must be distinct, got {cfg.models}")
    check_outputs([(out / name, "figure", "--out") for name in ("movement.png", "curves.png")])  # written last
    return out, runs


def _setup(cfg: DemoConfig, echo: Callable[[str], None]) -> tuple[str, Path]:
    """The device the demo runs on (its CPU threads set when ``cfg.threads`` asks) and the data
    root, which holds the glyphs cache on return."""
    device = str(resolve_device(cfg.device))
    if cfg.threads is not None and device == "cpu":
        import torch

        torch.set_num_threads(cfg.threads)
    root = Path(cfg.data_root).expanduser() if cfg.data_root else default_root()
    ensure_glyphs(root, cfg.glyph_images_per_class, echo)
    return device, root


def _pretrain(cfg: DemoConfig, name: str, run: Path, common: dict, echo: Callable[[str], None]) -> tuple[str, str]:
    """Pretrain model ``name`` on glyphs-a train into ``run/pretrain``; returns that folder and the
    model's label."""
    e = cfg.pretrain_epochs
    echo(f"== {name}: pretrain on glyphs-a train ({e} epochs)")
    pre = PretrainConfig(
        dataset="glyphs-a",
        out=str(run / "pretrain"),
        model=name,
        variant=cfg.variant,
        image_size=cfg.image_size,
        epochs=e,
        batch_size=cfg.pretrain_batch,
        lr=cfg.pretrain_lr,
        milestones=[max(1, e // 2), max(1, (3 * e) // 4)],
        val_fraction=0.1,
        **common,
    )
    return pre.out, pretrain(pre)["model"]


def _meta_train(cfg: DemoConfig, label: str, init: str, run: Path, common: dict, echo: Callable[[str], None]) -> str:
    """Meta-train from the pretrained ``init`` on glyphs-a, selected on glyphs-a val, into
    ``run/meta``; returns that folder."""
    echo(
        f"== {label}: meta-train on glyphs-a, selected on glyphs-a val ({cfg.meta_iterations} iterations, "
        f"{'first' if cfg.first_order else 'second'} order)"
    )
    meta = MetaTrainConfig(
        train="glyphs-a",
        init=init,
        out=str(run / "meta"),
        ways=cfg.ways,
        shots=cfg.meta_shots,
        queries=cfg.queries,
        meta_batch=cfg.meta_batch,
        iterations=cfg.meta_iterations,
        inner_steps=cfg.inner_steps,
        eval_inner_steps=cfg.eval_inner_steps,
        inner_lr=cfg.inner_lr,
        first_order=cfg.first_order,
        val_every=cfg.val_every,
        val_episodes=cfg.val_episodes,
        save_every=cfg.val_every,
        **common,
    )
    meta_train(meta)
    return meta.out


def _test(
    cfg: DemoConfig, label: str, meta_out: str, pre_out: str, common: dict, echo: Callable[[str], None]
) -> tuple[dict, dict]:
    """The table rows of the meta-trained model and of its pretrain-only baseline: each one's
    mean accuracy and 95% CI on glyphs-b test at every shot count of ``cfg.shots``."""
    row = {"model": label}
    base = {"model": f"{label}, pretrain only (linear head)"}
    for k in cfg.shots:
        echo(f"== {label}: test on glyphs-b, {cfg.ways}-way {k}-shot, {cfg.eval_episodes} episodes")
        for target, ckpt in ((row, meta_out), (base, pre_out)):
            ev = EvalConfig(
                checkpoint=ckpt,
                dataset="glyphs-b",
                shots=k,
                ways=cfg.ways,
                queries=cfg.queries,
                episodes=cfg.eval_episodes,
                **common,
            )
            result = evaluate(ev)
            target[f"{k}shot"], target[f"{k}shot_ci95"] = result.mean, result.ci95
            echo("   " + result.line().replace("\n", "\n   "))
    return row, base


def _summarize(
    demo: Run,
    cfg: DemoConfig,
    runs: list[Path],
    meta_runs: list[str],
    rows: list[dict],
    timings: dict[str, float],
    t0: float,
    echo: Callable[[str], None],
) -> dict:
    """Draw the plots, write and print the table and the summary (``summary.json``, ``summary.csv``,
    ``table.txt``) in the demo's folder; returns the summary."""
    out = demo.path
    movement_plot(meta_runs, out / "movement.png")
    curves_plot(meta_runs, out / "curves.png")
    table = _table(rows, list(cfg.shots))
    title = (
        f"{cfg.ways}-way accuracy (%) on glyphs-b test, trained on glyphs-a (Table 8 style), "
        f"{cfg.eval_episodes} episodes, mean +- 95% CI"
    )
    summary = {
        "title": title,
        "rows": rows,
        "chance": 1.0 / cfg.ways,
        "seconds": time.time() - t0,
        "seconds_per_model": timings,
        "config": asdict(cfg),
        "runs": [str(r) for r in runs],
        "movement_plot": str(out / "movement.png"),
        "curves_plot": str(out / "curves.png"),
    }
    demo.write_json("summary.json", summary)
    demo.write_csv("summary.csv", rows)
    demo.write_text("table.txt", title + "\n" + table + "\n")
    echo("")
    echo(title)
    echo(table)
    echo(
        f"\nplots: {out / 'movement.png'}, {out / 'curves.png'}; results: {out / 'summary.json'} "
        f"({time.time() - t0:.0f} s)"
    )
    return summary


def run_demo(cfg: DemoConfig, force: bool = False, echo: Callable[[str], None] = print) -> dict:
    """Run the demo; returns the summary (rows of the table, timings, paths)."""
    t0 = time.time()
    out, runs = _clear_out(cfg, force)
    device, root = _setup(cfg, echo)
    demo = Run(out, cfg)
    demo.start()
    common = dict(seed=cfg.seed, device=device, data_root=str(root), progress=cfg.progress)
    rows, timings, meta_runs = [], {}, []
    for name, run in zip(cfg.models, runs):
        t = time.time()
        pre_out, label = _pretrain(cfg, name, run, common, echo)
        meta_runs.append(_meta_train(cfg, label, pre_out, run, common, echo))
        rows += _test(cfg, label, meta_runs[-1], pre_out, common, echo)
        timings[name] = time.time() - t
    return _summarize(demo, cfg, runs, meta_runs, rows, timings, t0, echo)
