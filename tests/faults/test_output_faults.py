"""User-named outputs (eval -o, export -o, plots' -o): checked before the work, never replacing a
file of another kind; bad inputs of those commands are one line, exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.errors import UserError
from metahyper.train.outputs import check_output, file_kind


def _eval(pretrained, root, *args):
    return CliRunner().invoke(
        main,
        [
            "eval",
            "--checkpoint",
            str(pretrained["wrn-10-1"]),
            "--dataset",
            "glyphs-b",
            "--shots",
            "1",
            "--ways",
            "3",
            "--queries",
            "2",
            "--episodes",
            "2",
            "--head-steps",
            "2",
            "--data-root",
            str(root),
            "--device",
            "cpu",
            "--quiet",
            *args,
        ],
    )


def _one_line_error(result, text):
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and text in result.output and "Traceback" not in result.output


def test_eval_and_export_refuse_to_replace_checkpoints(glyph_root, pretrained, tmp_path):
    run = pretrained["wrn-10-1"]
    before = {n: (run / n).read_bytes() for n in ("best.pt", "last.pt")}
    _one_line_error(
        _eval(pretrained, glyph_root, "-o", str(run / "best.pt")), "holds a training checkpoint; refusing to replace it"
    )
    export = lambda out: CliRunner().invoke(main, ["export", "--checkpoint", str(run), "-o", str(out)])  # noqa: E731
    _one_line_error(
        export(run / "last.pt"), "holds a training checkpoint; refusing to replace it with an exported model"
    )
    _one_line_error(CliRunner().invoke(main, ["curves", str(run), "-o", str(run / "best.pt")]), "-o")
    assert {n: (run / n).read_bytes() for n in before} == before
    # the same kind is replaced: a repeated eval or export
    out = tmp_path / "e.json"
    for _ in range(2):
        assert _eval(pretrained, glyph_root, "-o", str(out)).exit_code == 0
    assert file_kind(out) == "eval" and json.loads(out.read_text())["episodes"] == 2
    for _ in range(2):
        assert export(tmp_path / "plain.pt").exit_code == 0
    assert file_kind(tmp_path / "plain.pt") == "export" and file_kind(run / "best.pt") == "checkpoint"
    # nor another file of the user's
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    _one_line_error(
        _eval(pretrained, glyph_root, "-o", str(tmp_path / "notes.json")), "holds a file metahyper did not write"
    )


def test_unwritable_outputs_fail_before_the_work(glyph_root, pretrained, tmp_path, monkeypatch):
    import metahyper.train.evaluate as evaluate

    monkeypatch.setattr(evaluate, "build_scorer", lambda *a: pytest.fail("evaluated before checking -o"))
    (tmp_path / "file").write_text("x")
    _one_line_error(
        _eval(pretrained, glyph_root, "-o", str(tmp_path / "file" / "e.json")), "is a file, not a directory"
    )
    with pytest.raises(UserError, match="is a directory"):
        check_output(tmp_path, "eval")
    result = CliRunner().invoke(
        main, ["export", "--checkpoint", str(pretrained["wrn-10-1"]), "-o", str(tmp_path / "file" / "p.pt")]
    )
    _one_line_error(result, "is a file, not a directory")


@pytest.mark.parametrize(
    "args, text",
    [
        (["curves", "{run}", "--smooth", "0", "-o", "{tmp}/c.png"], "--smooth must be >= 1"),
        (["curves", "{run}", "-o", "{tmp}/c.txt"], "name a .png file"),
        (["movement-plot", "{run}", "--smooth", "-1", "-o", "{tmp}/m.png"], "--smooth must be >= 1"),
        (
            ["eval", "--checkpoint", "{run}", "--dataset", "glyphs-b", "--shots", "1", "--device", "meta"],
            "unknown device 'meta'",
        ),
        (
            ["export", "--checkpoint", "{tmp}/nostate.pt", "-o", "{tmp}/p.pt"],
            "lacks a model_config, state_dict or extra",
        ),
        (["export", "--checkpoint", "{run}", "-o", ""], "-o must be a path, got an empty string"),
        (
            ["pretrain", "--dataset", "glyphs-a", "--model", "wrn-10-1", "--out", ""],
            "--out must be a path, got an empty string",
        ),
        (
            ["eval", "--checkpoint", "{run}", "--dataset", "glyphs-b", "--shots", "1", "-o", ""],
            "must be a path, got an empty string",
        ),
        (["movement-plot", "{tmp}/damaged", "-o", "{tmp}/m.png"], "movement.csv is damaged (ValueError"),
        (["curves", "{tmp}/damaged", "-o", "{tmp}/c.png"], "val.csv is damaged (KeyError"),
        (["prepare", "glyphs", "--image-size", "0", "--root", "{tmp}/cache"], "--image-size must be >= 1"),
    ],
)
def test_bad_inputs_of_the_other_commands(pretrained, tmp_path, args, text):
    import torch

    torch.save(
        {"format": "metahyper-checkpoint", "version": 1, "model_config": {"name": "wrn-10-1"}}, tmp_path / "nostate.pt"
    )
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text(json.dumps({"stage": "meta-train", "shots": 1}))
    (damaged / "movement.csv").write_text("iteration,stages.0.0.conv2\n1,abc\n")
    (damaged / "val.csv").write_text("iteration,acc\n1,0.5\n")
    args = [a.format(run=pretrained["wrn-10-1"], tmp=tmp_path) for a in args]
    _one_line_error(CliRunner().invoke(main, args), text)
