"""Figures from run directories (PNG, matplotlib's Agg canvas, written atomically).

* :func:`movement_plot` (Figure 4): inner-loop weight movement per iteration of chosen (or all
  moving) stage convs, log scale, one line per meta-train run labelled by its model.
* :func:`curves_plot` (Figures 2, 3, 5): validation accuracy (meta-train runs: per validation
  point with the 95% CI band, Figure 5; pretrain runs: per epoch, Figure 3), training loss, and for
  pretrain runs the ratio ``||P|| / ||grad P||`` per stage of one parameter group (Figure 2).
* :func:`rates_plot`: the learned inner rates of ``meta-sgd`` / ``lslr`` runs as a heat map, one
  row per adapted parameter, one column per inner step (``meta-sgd``: its mean over the elements).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metahyper.errors import UserError
from metahyper.io import atomic_path, read_csv, read_json
from metahyper.models import ModelConfig, layer_label
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.outputs import FIGURE_METADATA, check_output
from metahyper.train.run import read_config

# The layers of the paper's Figure 4 (a, b, c) in our module paths (WRN-28-4 has 4 blocks per stage).
PAPER_LAYERS = ("stages.0.1.conv1", "stages.1.1.conv2", "stages.2.3.conv2")
_LOG_FIX = "leave the run out of the plot or rewrite its logs (meta-train / pretrain --resume rewrites them)"


@dataclass
class PlottedRun:
    """What the plots need of one run directory."""

    path: Path
    stage: str
    label: str
    config: dict = field(default_factory=dict)


def _model_label(cfg: dict) -> str:
    return ModelConfig(cfg["model"], cfg.get("variant", 1), compressed=cfg.get("compressed", False)).label()


def _validated_on(cfg: dict) -> str:
    """The dataset whose val accuracy a meta-train run logs as ``val_acc`` (its selection data)."""
    test = cfg.get("test") or []
    test = [t for t in test.split(",") if t] if isinstance(test, str) else list(test)
    if cfg.get("select_on", "target") == "target" and test:  # runs without select_on validated on --test
        return test[0]
    return str(cfg.get("train"))


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a malformed log (a value that is not a number, a missing column) into a one-line
    :class:`UserError` naming the file."""
    try:
        yield
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); {_LOG_FIX}") from None


def load_run(path: str | Path) -> PlottedRun:
    """Read a pretrain or meta-train run directory's config and model label."""
    path = Path(path)
    cfg = read_config(path)
    stage = cfg.get("stage")
    if stage == "pretrain":
        with _reading(path / "config.json"):
            label = _model_label(cfg)
    elif stage == "meta-train":
        curves = path / "curves.json"
        with _reading(curves):
            label = (
                read_json(curves, "log", _LOG_FIX, fields={"model": str})["model"] if curves.is_file() else path.name
            )
    else:
        raise UserError(f"{path} is a {stage} run; plots take pretrain or meta-train run directories")
    return PlottedRun(path, stage, label, cfg)


def _unique_labels(runs: Sequence[PlottedRun]) -> list[str]:
    labels = [r.label for r in runs]
    return [f"{lab} ({r.path.name})" if labels.count(lab) > 1 else lab for lab, r in zip(labels, runs)]


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    return np.convolve(y, kernel, mode="valid")


def _save(fig: Figure, output: str | Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata=FIGURE_METADATA)
    return Path(output)


def _check_plot(output: str | Path, smooth: int) -> None:
    if smooth < 1:
        raise UserError(f"--smooth must be >= 1 (iterations of the moving average), got {smooth}")
    if Path(output).suffix.lower() != ".png":
        raise UserError(f"-o {output}: figures are written as PNG; name a .png file")
    check_output(output, "figure")


def _grid(n: int, width: float = 4.5, height: float = 3.4) -> tuple[Figure, list]:
    cols = min(3, max(n, 1))
    rows = -(-max(n, 1) // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    return fig, axes


def read_movement(run: PlottedRun) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(iterations, {layer: movement per iteration})`` of a meta-train run."""
    path = run.path / "movement.csv"
    if not path.is_file():
        raise UserError(f"{run.path} has no movement.csv; pass meta-train run directories")
    rows = read_csv(path, "log", _LOG_FIX)
    if not rows:
        raise UserError(f"{path} is empty; the run has not finished an iteration yet")
    layers = [k for k in rows[0] if k != "iteration"]
    with _reading(path):
        its = np.array([int(r["iteration"]) for r in rows])
        return its, {k: np.array([float(r[k]) for r in rows]) for k in layers}


def movement_plot(
    run_dirs: Sequence[str | Path],
    output: str | Path,
    layers: Sequence[str] | None = None,
    smooth: int = 1,
    paper_layers: bool = False,
) -> Path:
    """Figure 4 as a PNG (see :func:`movement_figure`); ``output`` is checked first
    (:func:`~metahyper.train.outputs.check_output`)."""
    _check_plot(output, smooth)
    return _save(movement_figure(run_dirs, layers, smooth, paper_layers), output)


def movement_figure(
    run_dirs: Sequence[str | Path], layers: Sequence[str] | None = None, smooth: int = 1, paper_layers: bool = False
) -> Figure:
    """Figure 4: one panel per layer, movement per iteration on a log axis, one line per run.
    ``layers``: module paths (``stages.1.1.conv2``) to show; default every layer that moves in
    some run (``paper_layers``: the paper's three where the models have them)."""
    runs = [load_run(p) for p in run_dirs]
    for r in runs:
        if r.stage != "meta-train":
            raise UserError(f"{r.path} is a {r.stage} run; movement-plot takes meta-train run directories")
    data = [read_movement(r) for r in runs]
    available = list(dict.fromkeys(k for _, m in data for k in m))
    if paper_layers:
        layers = [layer for layer in PAPER_LAYERS if layer in available] or None
        if layers is None:
            raise UserError(
                "none of the paper's Figure 4 layers exist in these models (they need 4 blocks per stage); "
                "drop --paper-layers"
            )
    if layers:
        missing = [layer for layer in layers if layer not in available]
        if missing:
            raise UserError(f"layer(s) {missing} not in the runs' movement logs; choose from {', '.join(available)}")
    else:
        layers = [k for k in available if any(np.any(m.get(k, np.zeros(1)) > 0) for _, m in data)]
        if not layers:
            raise UserError("no layer moved in the inner loop of these runs; nothing to plot")
    fig, axes = _grid(len(layers))
    for ax, layer in zip(axes, layers):
        for index, ((its, moves), label) in enumerate(zip(data, _unique_labels(runs))):
            if layer not in moves or not np.any(moves[layer] > 0):
                continue
            y = _smooth(moves[layer], smooth)
            ax.plot(
                its[len(its) - len(y) :], y, label=label, linewidth=1.2, color=f"C{index % 10}"
            )  # one colour per run
        ax.set_yscale("log")
        ax.set_title(layer_label(layer), fontsize=10)
        ax.set_xlabel("meta-iteration")
        ax.set_ylabel("inner-loop movement ||W' - W||")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Average inner-loop weight movement (paper Figure 4)")
    return fig


def curves_plot(
    run_dirs: Sequence[str | Path], output: str | Path, ratio_group: str | None = None, smooth: int = 20
) -> Path:
    """Figures 2, 3 and 5 as a PNG (see :func:`curves_figure`); ``output`` is checked first
    (:func:`~metahyper.train.outputs.check_output`)."""
    _check_plot(output, smooth)
    return _save(curves_figure(run_dirs, ratio_group, smooth), output)


def _validated_columns(row: dict) -> list[str]:
    """The ``<dataset>_acc`` columns of a ``val.csv`` row (one per validated dataset), else ``val_acc``."""
    return [k for k in row if k.endswith("_acc") and k not in ("val_acc", "train_acc")] or ["val_acc"]


def _plot_meta_runs(ax_of: dict[str, Axes], meta: Sequence[PlottedRun], labels: dict[Path, str], smooth: int) -> None:
    """Figure 5 on the ``meta-val`` and ``meta-loss`` axes: each meta-train run's validation
    accuracy on every dataset it validated on (the selection dataset solid, the others dashed; the
    cross-domain curves of Figure 5) with its 95% CI band, and its query loss smoothed over
    ``smooth`` iterations."""
    domains: set[str] = set()
    for r in meta:
        label = labels[r.path]
        with _reading(r.path / "val.csv"):
            val = read_csv(r.path / "val.csv", "log", _LOG_FIX) if (r.path / "val.csv").is_file() else []
            x = np.array([int(v["iteration"]) for v in val])
            color = None
            for column in _validated_columns(val[0]) if val else []:
                domain = _validated_on(r.config) if column == "val_acc" else column.removesuffix("_acc")
                domains.add(domain)
                y = 100 * np.array([float(v[column]) for v in val])
                ci = 100 * np.array([float(v[column.removesuffix("_acc") + "_ci95"]) for v in val])
                style = "-" if domain == _validated_on(r.config) else "--"
                (line,) = ax_of["meta-val"].plot(
                    x, y, style, color=color, marker="o", markersize=3, label=f"{label}, {domain} val"
                )
                color = line.get_color()
                ax_of["meta-val"].fill_between(x, y - ci, y + ci, color=color, alpha=0.2)
        with _reading(r.path / "train.csv"):
            train = read_csv(r.path / "train.csv", "log", _LOG_FIX) if (r.path / "train.csv").is_file() else []
            if train:
                loss = _smooth(np.array([float(t["loss"]) for t in train]), smooth)
                ax_of["meta-loss"].plot(np.arange(len(train) - len(loss) + 1, len(train) + 1), loss, label=label)
    shots = "/".join(map(str, sorted({r.config.get("shots") for r in meta})))
    ax_of["meta-val"].set(
        title=f"meta-validation accuracy, {', '.join(sorted(domains))} val ({shots}-shot; Figure 5)",
        xlabel="meta-iteration",
        ylabel="accuracy (%)",
    )
    ax_of["meta-loss"].set(title="meta-training query loss", xlabel="meta-iteration", ylabel="loss")


def _plot_pretrain_runs(
    ax_of: dict[str, Axes], pre: Sequence[PlottedRun], labels: dict[Path, str], ratio_group: str | None
) -> None:
    """Figures 3 and 2 on the ``pre-val``, ``pre-loss`` and ``ratio`` axes: each pretrain run's
    validation accuracy and training loss per epoch, and its ``||P|| / ||grad P||`` per stage of
    ``ratio_group`` (default: embeddings for hyper runs, backbone for plain ones)."""
    for r in pre:
        label = labels[r.path]
        path = r.path / "history.json"
        with _reading(path):
            history = read_json(path, "log", _LOG_FIX, expect=list) if path.is_file() else []
            if not history:
                continue
            epochs = [h["epoch"] for h in history]
            if "val_acc" in history[0]:
                ax_of["pre-val"].plot(epochs, [100 * h["val_acc"] for h in history], label=label)
            ax_of["pre-loss"].plot(epochs, [h["train_loss"] for h in history], label=label)
            group = ratio_group or ("embeddings" if r.config.get("model", "").startswith("hyper-") else "backbone")
            keys = sorted(k for k in history[0] if k.startswith(f"ratio/{group}/stage"))
            for k in keys:
                ax_of["ratio"].plot(epochs, [h[k] for h in history], label=f"{label}: {k.split('/')[-1]}")
    ax_of["pre-val"].set(title="validation accuracy (Figure 3)", xlabel="epoch", ylabel="accuracy (%)")
    ax_of["pre-loss"].set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_of["ratio"].set(
        title=f"||P|| / ||grad P|| ({ratio_group or 'embeddings / backbone'}; Figure 2)",
        xlabel="epoch",
        ylabel="ratio",
        yscale="log",
    )


def curves_figure(run_dirs: Sequence[str | Path], ratio_group: str | None = None, smooth: int = 20) -> Figure:
    """Figures 2, 3 and 5 from pretrain and/or meta-train runs (see the module docstring).
    ``ratio_group``: group of the Figure-2 panel (default: embeddings for hyper runs, backbone
    for plain ones)."""
    runs = [load_run(p) for p in run_dirs]
    meta = [r for r in runs if r.stage == "meta-train"]
    pre = [r for r in runs if r.stage == "pretrain"]
    labels = {
        **dict(zip((r.path for r in meta), _unique_labels(meta))),
        **dict(zip((r.path for r in pre), _unique_labels(pre))),
    }
    panels: list[str] = []
    if meta:
        panels += ["meta-val", "meta-loss"]
    if pre:
        panels += ["pre-val", "pre-loss", "ratio"]
    fig, axes = _grid(len(panels))
    ax_of = dict(zip(panels, axes))
    if meta:
        _plot_meta_runs(ax_of, meta, labels, smooth)
    if pre:
        _plot_pretrain_runs(ax_of, pre, labels, ratio_group)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def learned_rates(run_dir: str | Path) -> tuple[str, list[str], np.ndarray]:
    """``(inner rule, adapted parameter names, rates)`` of the checkpoint a run directory selects
    (``best.pt``, else ``last.pt``): one row per parameter, ``lslr`` one column per step,
    ``meta-sgd`` one column (the mean of the parameter's per-element rates)."""
    ckpt = load_checkpoint(run_dir)
    rule = (ckpt.extra.get("maml") or {}).get("inner_rule", "sgd")
    state = ckpt.extra.get("inner_rule") or {}
    rates = {k.removeprefix("lrs.").replace("/", "."): v for k, v in state.items() if k.startswith("lrs.")}
    if not rates:
        raise UserError(f"{run_dir}: its inner rule {rule!r} learns no rates; --rates takes meta-sgd or lslr runs")
    rows = [v.double().mean().reshape(1) if rule == "meta-sgd" else v.double().reshape(-1) for v in rates.values()]
    return rule, list(rates), np.stack([r.numpy() for r in rows])


def rates_plot(run_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """The learned inner rates of each run (:func:`learned_rates`) as heat maps, one panel per run."""
    _check_plot(output, 1)
    fig, axes = _grid(len(run_dirs), width=5.5, height=4.0)
    for ax, run_dir in zip(axes, run_dirs):
        rule, names, rates = learned_rates(run_dir)
        image = ax.imshow(rates, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_xticks(range(rates.shape[1]), [str(k) for k in range(rates.shape[1])] if rule == "lslr" else ["mean"])
        ax.set_xlabel("inner step" if rule == "lslr" else "over the elements")
        ax.set_title(f"{Path(run_dir).name}: {rule}", fontsize=10)
        fig.colorbar(image, ax=ax, label="inner learning rate")
    fig.suptitle("Learned inner learning rates")
    return _save(fig, output)
