"""A user dataset through the whole pipeline, and the cross-domain matrix of `eval`."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import EvalConfig
from metahyper.errors import UserError
from metahyper.train.eval_matrix import evaluate_matrix
from metahyper.train.evaluate import evaluate


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def test_folder_dataset_pretrain_meta_train_and_matrix(tmp_path, glyph_root, image_folder):
    root = tmp_path / "data"
    root.mkdir()
    (root / "glyphs-b").symlink_to(glyph_root / "glyphs-b")  # a built-in beside the user dataset
    source = image_folder(tmp_path / "src", {f"c{i}": 4 for i in range(8)})
    out = CliRunner().invoke(
        main,
        [
            "prepare",
            "folder",
            "--source",
            str(source),
            "--name",
            "mine",
            "--root",
            str(root),
            "--image-size",
            "8",
            "--split-ratios",
            "0.5,0.25,0.25",
        ],
    )
    assert out.exit_code == 0, out.output
    data = ["--data-root", str(root)]
    _invoke(
        "pretrain",
        "--dataset",
        "mine",
        "--model",
        "wrn-10-1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.25",
        "--out",
        str(tmp_path / "pre"),
        *data,
    )
    _invoke(
        "meta-train",
        "--train",
        "mine",
        "--test",
        "mine",
        "--init",
        str(tmp_path / "pre"),
        "--ways",
        "2",
        "--queries",
        "1",
        "--meta-batch",
        "1",
        "--iterations",
        "2",
        "--inner-steps",
        "1",
        "--inner-steps-eval",
        "1",
        "--val-every",
        "1",
        "--val-episodes",
        "2",
        "--out",
        str(tmp_path / "meta"),
        *data,
    )
    printed = _invoke(
        "eval",
        "--checkpoint",
        str(tmp_path / "meta"),
        "--dataset",
        "mine,glyphs-b",
        "--shots",
        "1,2",
        "--ways",
        "2",
        "--queries",
        "1",
        "--episodes",
        "4",
        *data,
    )
    lines = printed.splitlines()
    assert lines[0].startswith("WRN-10-1 [maml], test split, 2-way, 4 episodes")
    assert lines[1].split() == ["dataset", "1-shot", "2-shot"]
    assert [line.split()[0] for line in lines[2:4]] == ["mine", "glyphs-b"]
    table = tmp_path / "meta" / "eval-mine+glyphs-b-test-2w1+2s-seed0"
    saved = json.loads(table.with_suffix(".json").read_text())
    assert saved["datasets"] == ["mine", "glyphs-b"] and saved["shots"] == [1, 2] and len(saved["results"]) == 4
    rows = list(csv.DictReader(table.with_suffix(".csv").open()))
    assert [(r["dataset"], r["shots"]) for r in rows] == [
        ("mine", "1"),
        ("mine", "2"),
        ("glyphs-b", "1"),
        ("glyphs-b", "2"),
    ]
    assert table.with_suffix(".md").read_text().splitlines()[1] == "| dataset | 1-shot | 2-shot |"  # under its marker
    # each cell is the single evaluation, written as before (scalar dataset and shots, its own config)
    cell = json.loads((tmp_path / "meta" / "eval-glyphs-b-test-2w2s-seed0.json").read_text())
    single = evaluate(
        EvalConfig(
            checkpoint=str(tmp_path / "meta"),
            dataset="glyphs-b",
            shots=2,
            ways=2,
            queries=1,
            episodes=4,
            data_root=str(root),
            device="cpu",
            progress=False,
        ),
        write=False,
    )
    assert (cell["dataset"], cell["shots"], cell["config"]["dataset"], cell["config"]["shots"]) == (
        "glyphs-b",
        2,
        "glyphs-b",
        2,
    )
    assert cell["accuracies"] == single.accuracies and cell["fingerprint"] == single.fingerprint
    assert rows[3]["mean"] == str(single.mean)
    assert f"{100 * single.mean:.2f} +- {100 * single.ci95:.2f}" in lines[3]
    # eval --config on the table repeats the whole matrix
    again = _invoke("eval", "--config", str(table.with_suffix(".json")), "-o", str(tmp_path / "again.json"))
    assert again.splitlines()[:4] == lines[:4]


def test_single_evaluate_refuses_a_matrix_config(glyph_root, pretrained, tmp_path):
    cfg = EvalConfig(
        checkpoint=str(pretrained["wrn-10-1"]),
        dataset="glyphs-a,glyphs-b",
        shots=1,
        ways=3,
        queries=2,
        episodes=2,
        data_root=str(glyph_root),
        device="cpu",
        progress=False,
    )
    with pytest.raises(UserError, match="use evaluate_matrix"):
        evaluate(cfg)
    matrix = evaluate_matrix(cfg, write=False)
    assert list(matrix.cells) == [("glyphs-a", 1), ("glyphs-b", 1)] and matrix.files == []
    with pytest.raises(UserError, match="--shots lists a value twice"):
        EvalConfig(checkpoint="c", dataset="glyphs-b", shots=[1, 1])


def test_datasets_in_memory_or_in_place_score_the_same(glyph_root, pretrained):
    def cfg(mode: str, dataset: str = "glyphs-a,glyphs-b") -> EvalConfig:
        kw = dict(shots=1, ways=3, queries=2, episodes=2, data_root=str(glyph_root), device="cpu", progress=False)
        return EvalConfig(checkpoint=str(pretrained["wrn-10-1"]), dataset=dataset, in_memory=mode, **kw)

    ram, disk = (evaluate_matrix(cfg(mode), write=False) for mode in ("yes", "no"))
    assert [c.accuracies for c in ram.cells.values()] == [c.accuracies for c in disk.cells.values()]
    assert evaluate(cfg("no", "glyphs-b"), write=False).accuracies == ram.cells["glyphs-b", 1].accuracies
