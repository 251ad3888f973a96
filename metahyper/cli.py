"""Command line: one thin click command per pipeline stage (see README for usage).

The options of ``pretrain``, ``meta-train``, ``eval`` and ``demo`` are generated from the fields of
their config dataclasses (:mod:`metahyper.cli_options`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from metahyper.cli_options import build_config, config_options, prepare_options
from metahyper.config import IMAGENET_RECIPE, DemoConfig, EvalConfig, MetaTrainConfig, PretrainConfig
from metahyper.data import DATASETS
from metahyper.errors import UserError
from metahyper.models import GROUPS
from metahyper.options import specs
from metahyper.train.distributed import distributed_session


class _Group(click.Group):
    """Click group that turns :class:`UserError` into a one-line message and exit code 2, and
    Ctrl-C (KeyboardInterrupt) into one line and exit code 130 (click would print "Aborted!" and
    exit 1; the commands' atomic writers have removed their temporary files by then). Its
    ``prepare`` command is built from the dataset registry when used (:func:`prepare_command`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "prepare"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return prepare_command() if name == "prepare" else super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted (Ctrl-C); files being written were left as they were before", err=True)
            ctx.exit(130)
        except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
            if (
                not isinstance(err, MemoryError)
                and "out of memory" not in str(err)
                and "can't allocate memory" not in str(err)
            ):
                raise
            detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            click.echo(
                f"Error: out of memory ({detail}); "
                "use smaller batches, images or models, or a lower $METAHYPER_MAX_MEMORY_GB so the estimate refuses "
                "such runs before they start",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="metahyper")
def main() -> None:
    """metahyper: hypernetwork residual networks, pretraining, MAML and cross-domain few-shot eval."""


def _echo_families() -> None:
    """The registered model families (:data:`metahyper.models.registry.FAMILIES`), one per line."""
    from metahyper.models.registry import FAMILIES

    fmt = "{:<10} {:<16} {}"
    click.echo(fmt.format("family", "names", "architecture"))
    for family in FAMILIES.values():
        click.echo(fmt.format(family.name, family.usage, family.description))
    click.echo(
        fmt.format("hyper", "hyper-<name>", "the hyper version of any of them (--variant 1 or 2, paper section 3)")
    )


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--families", is_flag=True, help="Print only the model families and the names they take.")
def models_cmd(as_json: bool, families: bool) -> None:
    """The model families and the names they take, then a table of the catalogued architectures:
    train / test (exported) / stored parameters beside the paper's."""
    from metahyper.models.catalog import catalog_rows

    if families:
        _echo_families()
        return
    rows = catalog_rows()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **r.config.to_dict(),
                        "label": r.label,
                        "train_params": r.train_params,
                        "test_params": r.test_params,
                        "stored_params": r.stored_params,
                        "paper_train_m": r.paper_train_m,
                        "paper_test_m": r.paper_test_m,
                        "source": r.source,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    _echo_families()
    click.echo()
    fmt = "{:<24} {:>10} {:>10} {:>10} {:>10} {:>10}  {}"
    click.echo(fmt.format("model", "train", "test", "stored", "paper tr.", "paper te.", "paper"))

    def m(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}M"

    for r in rows:
        click.echo(
            fmt.format(
                r.label,
                m(r.train_params / 1e6),
                m(r.test_params / 1e6),
                m(r.stored_params / 1e6),
                m(r.paper_train_m),
                m(r.paper_test_m),
                r.source,
            )
        )


@main.command("export")
@click.option(
    "--checkpoint",
    "checkpoint",
    required=True,
    type=click.Path(path_type=str),
    help="Checkpoint file or run directory.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Where to write the plain model.",
)
def export_cmd(checkpoint: str, output: str) -> None:
    """Convert a hyper network to its plain architecture (paper section 3) and save it."""
    from metahyper.models import count_parameters, to_plain
    from metahyper.train.checkpoint import load_checkpoint, save_checkpoint
    from metahyper.train.outputs import check_output

    if not output:
        raise UserError("-o must be a path, got an empty string")
    check_output(output, "export")
    ckpt = load_checkpoint(checkpoint)
    plain = to_plain(ckpt.build_model().eval())
    save_checkpoint(output, plain, exported_from=str(ckpt.path), source_model=ckpt.model_config.to_dict())
    shown = f"{plain.config.label()} ({count_parameters(plain):,} parameters)"
    click.echo(f"exported {ckpt.model_config.label()} -> {shown} to {output}")


def _prepare(dataset: str, source: str | None, download: bool, root: str | None, force: bool, **options) -> None:
    """Build the HDF5 cache of DATASET (torchmeta layout); `folder`: any folder of class subfolders of images."""
    from metahyper.data import prepare

    given = {k: v for k, v in options.items() if v is not None and v is not False}  # unset: the builder's default
    written = prepare(dataset, root=root, source=source, download=download, force=force, **given)
    click.echo(f"{given.get('name') or dataset}: wrote {len(written)} files under {written[0].parent.parent}")


def prepare_command() -> click.Command:
    """``metahyper prepare``, generated from the registered datasets (:data:`metahyper.data.DATASETS`,
    also those registered after import): DATASET is one of their names, and every builder option a
    dataset offers is an option (:func:`~metahyper.cli_options.prepare_options`)."""
    specs = list(DATASETS.values())
    downloadable = ", ".join(spec.name for spec in specs if spec.download)
    params = [
        click.Argument(["dataset"], type=click.Choice(tuple(DATASETS))),
        click.Option(
            ["--source"],
            type=click.Path(path_type=str),
            help="Local archive or folder (see docs/datasets.md per dataset).",
        ),
        click.Option(
            ["--download"], is_flag=True, help=f"Download the official archive ({downloadable}; md5-checked)."
        ),
        click.Option(
            ["--root"], type=click.Path(path_type=str), help="Cache root (default: $METAHYPER_DATA or datasets/data)."
        ),
        click.Option(["--force"], is_flag=True, help="Overwrite an existing cache."),
        *prepare_options(specs),
    ]
    return click.Command("prepare", callback=_prepare, params=params, help=_prepare.__doc__)


@main.command("datasets")
@click.option("--root", type=click.Path(path_type=str), help="Cache root (default: $METAHYPER_DATA or datasets/data).")
@click.option("--deep", is_flag=True, help="Also read every byte and check it against the hashes recorded at build.")
def datasets_cmd(root: str | None, deep: bool) -> None:
    """List and validate the dataset caches found under the cache root: their structure, declared
    sizes and build identity, without reading every image (--deep reads everything)."""
    from metahyper.data import default_root, list_caches

    rows = list_caches(root, deep=deep)
    click.echo(f"cache root: {root or default_root()}")
    if not rows:
        click.echo(
            "no caches found; build one with `metahyper prepare glyphs` (offline) or see `metahyper prepare --help`"
        )
        return
    click.echo(f"{'dataset':<16}{'split':<7}{'classes':>8}{'img/class':>11}{'size':>8}  status")
    for r in rows:
        status = "ok" if r.error is None else f"ERROR: {r.error}"
        click.echo(f"{r.dataset:<16}{r.split:<7}{r.classes:>8}{r.images_per_class:>11}{r.image_size:>8}  {status}")


# ------------------------------------------------------------------------------------------------
# Pipeline: pretrain, meta-train, eval, plots, demo. Thin: build a config dataclass and call
# metahyper.train.* / metahyper.plots. pretrain, meta-train and eval run distributed under torchrun
# (metahyper.train.distributed); only rank 0 prints and writes.


def _pretrain_defaults(values: dict, given: set) -> None:
    """CIFAR-10/100 validate on their test split (the paper's tables) unless told otherwise;
    ImageNet takes :data:`~metahyper.config.IMAGENET_RECIPE` for every option not given and still
    at its (CIFAR recipe) default."""
    if "eval_split" not in given and values.get("eval_split") is None and values["dataset"] in ("cifar10", "cifar100"):
        values["eval_split"] = "test"
    if values["dataset"] == "imagenet":
        defaults = {s.name: s.default for s in specs(PretrainConfig)}
        for name, value in IMAGENET_RECIPE.items():
            if name not in given and values.get(name, defaults[name]) == defaults[name]:
                values[name] = value


def _run(cls: type, options: dict[str, Any], stage: Callable, adjust: Callable | None = None) -> tuple[Any, Any]:
    """Build ``cls`` from the options and run ``stage(cfg, ctx)`` (under ``torchrun``: in every
    process); ``(cfg, its result)`` on the main process, ``(cfg, None)`` on the others."""
    cfg = build_config(cls, options, adjust)
    with distributed_session(cfg.device) as ctx:
        result = stage(cfg, ctx)
    return cfg, result if ctx.is_main else None


def _restarted(cfg: Any, summary: dict) -> None:
    if summary.get("restarted"):
        click.echo(
            f"note: {cfg.out} held no last.pt to resume from, so --resume ran the run again from scratch", err=True
        )


@main.command("pretrain")
@config_options(PretrainConfig, from_file=True)
def pretrain_cmd(**options) -> None:
    """Classification training (paper sections 4.2 and 5.1): SGD + step schedule, optional SWA."""
    from metahyper.train.pretrain import pretrain

    cfg, summary = _run(PretrainConfig, options, pretrain, _pretrain_defaults)
    if summary is None:
        return
    _restarted(cfg, summary)
    best = summary.get("swa_val_acc") if summary.get("swa_val_acc") is not None else summary["best_val_acc"]
    shown = f"validation accuracy {100 * best:.2f} %" if best is not None else "no validation set"
    click.echo(f"pretrained {summary['model']} for {cfg.epochs} epochs: {shown}; run in {cfg.out}")


@main.command("meta-train")
@config_options(MetaTrainConfig, from_file=True)
def meta_train_cmd(**options) -> None:
    """MAML from a pretrained backbone (Algorithms 1 and 2), validating on another dataset."""
    from metahyper.train.meta_train import meta_train

    cfg, summary = _run(MetaTrainConfig, options, meta_train)
    if summary is None:
        return
    _restarted(cfg, summary)
    best = summary["best_val_acc"]
    shown = f"best validation {100 * best:.2f} %" if best is not None else "no validation"
    click.echo(f"meta-trained {summary['model']} for {cfg.iterations} iterations: {shown}; run in {cfg.out}")


def _eval_shape(values: dict, given: set) -> None:
    """``--shots`` is required (or from ``--config``) unless ``--benchmark`` (variable shots)."""
    if values.get("benchmark") is None and values.get("shots") is None:
        raise UserError("missing option --shots; pass it, or --config with a run that sets it")


@main.command("eval")
@config_options(EvalConfig, from_file=True)
def eval_cmd(**options) -> None:
    """Few-shot accuracy on seeded episodes: mean +- 1.96 std / sqrt(n) (same seed: same episodes);
    several --dataset / --shots values: one table (rows: datasets, columns: shots)."""
    from metahyper.train import benchmark, eval_matrix, evaluate

    def stage(cfg: EvalConfig, ctx) -> Any:
        if cfg.benchmark is not None:
            return benchmark.evaluate_benchmark(cfg, ctx)
        return evaluate.evaluate(cfg, ctx) if cfg.single else eval_matrix.evaluate_matrix(cfg, ctx)

    _, result = _run(EvalConfig, options, stage, _eval_shape)
    if result is None:
        return
    if isinstance(result, dict):
        click.echo(benchmark.benchmark_text(result))
        click.echo(f"wrote {', '.join(result['files'])}")
        return
    click.echo(result.line())
    written = result.files if isinstance(result, eval_matrix.EvalMatrix) else [result.settings["output"]]
    click.echo(f"wrote {', '.join(written)}")


@main.command("movement-plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "-o", "--output", default="movement.png", show_default=True, type=click.Path(dir_okay=False, path_type=str)
)
@click.option(
    "--layer",
    "layers",
    multiple=True,
    help="Layer to plot, e.g. stages.1.1.conv2 (repeatable; default: all that move).",
)
@click.option("--paper-layers", is_flag=True, help="The paper's three Figure 4 layers.")
@click.option("--smooth", default=1, show_default=True, help="Moving-average window (iterations).")
@click.option(
    "--rates",
    is_flag=True,
    help="Instead: the learned inner rates (meta-sgd, lslr), a heat map.",
)
def movement_plot_cmd(runs, output, layers, paper_layers, smooth, rates) -> None:
    """Inner-loop weight movement per iteration (paper Figure 4), one line per meta-train run."""
    from metahyper.plots import movement_plot, rates_plot

    if rates:
        click.echo(f"wrote {rates_plot(runs, output)}")
        return
    click.echo(f"wrote {movement_plot(runs, output, list(layers) or None, smooth=smooth, paper_layers=paper_layers)}")


@main.command("curves")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("-o", "--output", default="curves.png", show_default=True, type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--ratio-group",
    default=None,
    type=click.Choice(GROUPS),
    help="Group of the ||P||/||grad P|| panel (default: embeddings for hyper runs, backbone for plain).",
)
@click.option("--smooth", default=20, show_default=True, help="Moving-average window of the meta-training loss.")
def curves_cmd(runs, output, ratio_group, smooth) -> None:
    """Validation / loss curves (Figures 3 and 5) and the norm / gradient-norm ratios (Figure 2)."""
    from metahyper.plots import curves_plot

    click.echo(f"wrote {curves_plot(runs, output, ratio_group=ratio_group, smooth=smooth)}")


@main.command("report")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--title", default="", help="Title line of the table.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=str), help="Also write the table as markdown.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also write one CSV line per run and aggregate.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=str), help="Also write the table as JSON."
)
@click.option(
    "--budget",
    nargs=2,
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=str),
    metavar="PLAIN HYPER",
    help="Pretrain runs: first epoch at which HYPER reaches PLAIN's final accuracy, as a share of the budget.",
)
def report_cmd(paths, title, markdown, csv_path, json_path, budget) -> None:
    """Eval JSONs (files, or run directories searched for them) as a table: models x datasets x
    shots, mean +- 95% CI over episodes; several runs (seeds): mean +- sd over runs. `eval --benchmark`
    JSONs: their sources side by side, with the average rank. With --budget: section 5.2's
    training budget a hyper run needs to match a plain run."""
    from metahyper.report import (
        benchmark_comparison,
        budget_text,
        budget_to_match,
        build_report,
        check_report_outputs,
        collect,
        collect_benchmarks,
        write_report,
    )  # fmt: skip

    if not paths and not budget:
        raise UserError("nothing to report; pass eval JSONs / run directories, or --budget PLAIN HYPER")
    check_report_outputs(markdown, csv_path, json_path)  # before reading the inputs
    lines = [budget_text(budget_to_match(plain, hyper)) for plain, hyper in budget]  # read all before printing
    for line in lines:
        click.echo(line)
    if not paths:
        return
    benchmarks = collect_benchmarks(paths)  # `eval --benchmark` results: sources x checkpoints, average rank
    if benchmarks is not None:
        text, written = benchmark_comparison(benchmarks, markdown, csv_path, json_path)
        click.echo(text)
        for path in written:
            click.echo(f"wrote {path}")
        return
    report = build_report(collect(paths), title)
    click.echo(report.text())
    for path in write_report(report, markdown, csv_path, json_path):
        click.echo(f"wrote {path}")


@main.command("demo")
@config_options(DemoConfig)
@click.option("--force", is_flag=True, help="Replace an earlier demo in --out.")
def demo_cmd(force: bool, **options) -> None:
    """The whole pipeline on the built-in glyphs: plain WRN vs hyper WRN, Table-8-style summary."""
    from metahyper.demo import run_demo

    run_demo(build_config(DemoConfig, options), force=force, echo=click.echo)
