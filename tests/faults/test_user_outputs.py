"""Every file a command writes at a user-named path (eval -o and the eval table, export -o, the
plots' -o, report --markdown/--csv/--json) replaces only an earlier output of the same kind, told
from the file's content; everything else (a checkpoint, a run's config, a user's file or photo) is
refused in one line before any work, and the eval table checks all its inputs before any write."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from metahyper.cli import main
from metahyper.models import build_model
from metahyper.train.checkpoint import save_checkpoint
from metahyper.train.outputs import file_kind

EVAL_KEYS = {"model": "WRN-10-1", "method": "linear", "dataset": "glyphs-b", "split": "test", "ways": 3, "shots": 1}


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """A hand-made run (``best.pt``, ``config.json``), an eval JSON, and a user's files."""
    run = tmp_path / "run"
    save_checkpoint(run / "best.pt", build_model("wrn-10-1", num_classes=3), stage="pretrain", input_size=8)
    (run / "config.json").write_text(json.dumps({"stage": "pretrain", "dataset": "glyphs-a"}))
    result = {**EVAL_KEYS, "mean": 0.5, "ci95": 0.1, "accuracies": [0.4, 0.6], "episodes": 2, "fingerprint": "f"}
    (tmp_path / "eval.json").write_text(json.dumps(result))
    (tmp_path / "notes.txt").write_text("mine\n")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "photo.png")
    return {"run": run, "eval": tmp_path / "eval.json", "tmp": tmp_path}


# every (command, option) that writes a user-named file: the arguments before the option
WRITERS = {
    ("eval", "output"): [
        "eval", "--checkpoint", "{run}", "--dataset", "glyphs-b", "--shots", "1", "--ways", "3", "--device", "cpu",
        "--quiet", "-o",
    ],
    ("export", "output"): ["export", "--checkpoint", "{run}/best.pt", "-o"],
    ("curves", "output"): ["curves", "{run}", "-o"],
    ("movement-plot", "output"): ["movement-plot", "{run}", "-o"],
    ("report", "markdown"): ["report", "{eval}", "--markdown"],
    ("report", "csv_path"): ["report", "{eval}", "--csv"],
    ("report", "json_path"): ["report", "{eval}", "--json"],
}  # fmt: skip


def _invoke(args: list[str], places: dict[str, Path]):
    return CliRunner().invoke(main, [a.format(**places) for a in args])


def _one_line_error(result, *texts: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert all(text in result.output for text in texts), result.output


def test_every_file_output_option_is_checked():
    """Each click option that takes a file path to write (a ``click.Path`` that refuses folders)
    is one of :data:`WRITERS`, so a command added later cannot skip the check unnoticed."""
    ctx = click.Context(main)
    found = {
        (name, param.name)
        for name in main.list_commands(ctx)
        for param in main.get_command(ctx, name).params
        if isinstance(param.type, click.Path) and not param.type.dir_okay
    }
    assert found == set(WRITERS)


@pytest.mark.parametrize("writer", sorted(WRITERS), ids=[f"{c}-{o}" for c, o in sorted(WRITERS)])
@pytest.mark.parametrize("target", ["{run}/best.pt", "{run}/config.json", "{tmp}/notes.txt", "{tmp}/photo.png"])
def test_no_output_option_replaces_what_metahyper_did_not_write(places, writer, target):
    before = {p: p.read_bytes() for p in places["tmp"].rglob("*") if p.is_file()}
    result = _invoke([*WRITERS[writer], target], places)
    _one_line_error(result, target.format(**places))
    assert "refusing to replace" in result.output or "name a .png file" in result.output
    assert {p: p.read_bytes() for p in places["tmp"].rglob("*") if p.is_file()} == before


def test_report_outputs_replace_only_their_own_format(places):
    tmp = places["tmp"]
    outputs = ["--markdown", f"{tmp}/t.md", "--csv", f"{tmp}/t.csv", "--json", f"{tmp}/t.json"]
    for _ in range(2):  # a repeated report replaces its own files
        assert _invoke(["report", "{eval}", *outputs], places).exit_code == 0
    assert [file_kind(tmp / f"t.{ext}") for ext in ("md", "csv", "json")] == ["report.md", "report.csv", "report.json"]
    _one_line_error(_invoke(["report", "{eval}", "--markdown", f"{tmp}/t.csv"], places), "holds the CSV of a report")
    _one_line_error(
        _invoke(["report", "{eval}", "--csv", f"{tmp}/x", "--json", f"{tmp}/x"], places),
        "name a different file for each",
    )
    # one refused output: none is written, not even those named before it
    _one_line_error(_invoke(["report", "{eval}", "--markdown", f"{tmp}/new.md", "--json", "{run}/config.json"], places))
    assert not (tmp / "new.md").exists() and not (tmp / "x").exists()


def test_figures_are_told_from_a_users_png(places, tmp_path):
    from matplotlib.figure import Figure

    from metahyper.plots import _save

    fig = Figure()
    fig.add_subplot().plot([0, 1])
    assert file_kind(_save(fig, tmp_path / "mine.png")) == "figure"
    assert file_kind(tmp_path / "photo.png") == "other"


def _matrix(places, root, *args):
    return _invoke(
        ["eval", "--checkpoint", "{run}", "--shots", "1,2", "--ways", "3", "--queries", "1", "--episodes", "1",
         "--head-steps", "1", "--data-root", str(root), "--device", "cpu", "--quiet", *args],
        places,
    )  # fmt: skip


def test_eval_table_checks_every_input_and_output_before_any_work(places, glyph_root, monkeypatch):
    import metahyper.train.evaluate as evaluate

    run = places["run"]
    assert _matrix(places, glyph_root, "--dataset", "glyphs-b").exit_code == 0
    table = run / "eval-glyphs-b-test-3w1+2s-seed0"
    assert [file_kind(table.with_suffix(ext)) for ext in (".json", ".csv", ".md")] == [
        "eval-table.json",
        "eval-table.csv",
        "eval-table.md",
    ]
    assert _matrix(places, glyph_root, "--dataset", "glyphs-b").exit_code == 0  # its own files are replaced
    before = {p: p.read_bytes() for p in run.iterdir()}
    monkeypatch.setattr(evaluate, "build_scorer", lambda *a: pytest.fail("scored before every input was checked"))
    # a missing cache of the second dataset: before, the first dataset's results were written (replaced)
    _one_line_error(_matrix(places, glyph_root, "--dataset", "glyphs-b,miniimagenet"), "missing cache file")
    # a table output onto a run's config.json, or onto a user's file where a cell would go
    _one_line_error(_matrix(places, glyph_root, "--dataset", "glyphs-b", "-o", f"{run}/config.json"), "config.json")
    (places["tmp"] / "eval-glyphs-b-test-3w2s-seed0.json").write_text('{"mine": 1}')
    _one_line_error(
        _matrix(places, glyph_root, "--dataset", "glyphs-b", "-o", f"{places['tmp']}/table.json"),
        "eval-glyphs-b-test-3w2s-seed0.json exists and holds a file metahyper did not write",
    )
    assert {p: p.read_bytes() for p in run.iterdir()} == before
    assert not (places["tmp"] / "table.json").exists()


def test_demo_refuses_a_foreign_figure_before_any_work(places, monkeypatch):
    import metahyper.demo as demo

    out = places["tmp"] / "demo"
    out.mkdir()
    (out / "curves.png").write_bytes((places["tmp"] / "photo.png").read_bytes())
    monkeypatch.setattr(demo, "_setup", lambda *a: pytest.fail("worked before checking the figures"))
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--device", "cpu"])
    _one_line_error(result, "curves.png exists and holds a file metahyper did not write")
    assert sorted(p.name for p in out.iterdir()) == ["curves.png"]
