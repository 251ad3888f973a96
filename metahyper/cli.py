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
