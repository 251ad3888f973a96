"""Model selection of meta-training (--select-on) and what eval reports about it."""

import json

import pytest
import torch

import metahyper.data
from metahyper.config import EvalConfig, MetaTrainConfig
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.evaluate import evaluate
from metahyper.train.meta_train import meta_train
from tests.conftest import tiny_meta_config


def _cfg(root, init, out, **kw) -> MetaTrainConfig:
    return tiny_meta_config(root, init, out, **{"test": [], "save_every": 3, **kw})


@pytest.fixture
def opened(monkeypatch):
    """Every (dataset, split) meta-training opens."""
    seen: list[tuple[str, str]] = []
    real = metahyper.data.open_split

    def spy(name, split, *args, **kw):
        seen.append((name, split))
        return real(name, split, *args, **kw)

    monkeypatch.setattr(metahyper.data, "open_split", spy)
    return seen


def test_select_on_source_reads_no_target_and_monitoring_changes_nothing(glyph_root, pretrained, tmp_path, opened):
    init = pretrained["hyper-wrn-10-1"]
    meta_train(_cfg(glyph_root, init, tmp_path / "alone"))
    assert set(opened) == {("glyphs-a", "train"), ("glyphs-a", "val")}  # the target is never opened
    opened.clear()
    meta_train(_cfg(glyph_root, init, tmp_path / "watched", test=["glyphs-b"]))
    assert ("glyphs-b", "val") in opened and ("glyphs-b", "test") not in opened  # monitored on val only
    alone, watched = load_checkpoint(tmp_path / "alone" / "best.pt"), load_checkpoint(tmp_path / "watched" / "best.pt")
    assert alone.extra["selection"] == watched.extra["selection"]
    assert alone.extra["selection"]["rule"] == "source" and alone.extra["selection"]["dataset"] == "glyphs-a"
    assert all(torch.equal(alone.state_dict[k], watched.state_dict[k]) for k in alone.state_dict)
    rows = read_csv(tmp_path / "watched" / "val.csv")
    assert len(rows) == 3 and all(r["val_acc"] == r["glyphs-a_acc"] and r["glyphs-b_acc"] != "" for r in rows)


def test_select_on_target_and_last(glyph_root, pretrained, tmp_path):
    init = pretrained["wrn-10-1"]
    summary = meta_train(
        _cfg(glyph_root, init, tmp_path / "target", test=["glyphs-b"], select_on="target", first_order=True)
    )
    best = load_checkpoint(tmp_path / "target" / "best.pt")
    rows = read_csv(tmp_path / "target" / "val.csv")
    top = max(rows, key=lambda r: float(r["glyphs-b_acc"]))  # first maximum, as the run keeps it
    assert best.extra["selection"]["dataset"] == "glyphs-b" and best.extra["iteration"] == int(top["iteration"])
    assert summary["selection"]["rule"] == "target" and all(r["val_acc"] == r["glyphs-b_acc"] for r in rows)

    meta_train(_cfg(glyph_root, init, tmp_path / "last", select_on="last", first_order=True, val_every=0))
    best, last = load_checkpoint(tmp_path / "last" / "best.pt"), load_checkpoint(tmp_path / "last" / "last.pt")
    assert best.extra["selection"] == {**best.extra["selection"], "rule": "last", "iteration": 3}
    assert all(torch.equal(best.state_dict[k], last.state_dict[k]) for k in best.state_dict)


def test_eval_reports_checkpoint_and_rule(glyph_root, pretrained, tmp_path, cli):
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "meta", first_order=True))
    out = tmp_path / "eval.json"
    proc = cli(
        "eval",
        "--checkpoint",
        str(tmp_path / "meta"),
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
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "-o",
        str(out),
    )
    saved = json.loads(out.read_text())["selection"]
    assert saved["checkpoint"] == "best.pt" and saved["rule"] == "source" and saved["dataset"] == "glyphs-a"
    assert "scored best.pt: best validation accuracy on glyphs-a val classes" in proc.stdout
    pre = evaluate(
        EvalConfig(
            checkpoint=str(pretrained["wrn-10-1"] / "last.pt"),
            dataset="glyphs-b",
            shots=1,
            ways=3,
            queries=2,
            episodes=1,
            data_root=str(glyph_root),
            device="cpu",
            progress=False,
        ),
        write=False,
    )
    assert pre.selection["rule"] == "final" and pre.settings["train_seed"] == 0


def test_select_on_options_are_checked(glyph_root, pretrained, tmp_path, cli):
    with pytest.raises(UserError, match="--select-on target needs --test"):
        _cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "x", select_on="target")
    with pytest.raises(UserError, match="twice"):
        _cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "x", test="glyphs-b,glyphs-b")
    proc = cli(
        "meta-train",
        "--train",
        "glyphs-a",
        "--init",
        str(pretrained["wrn-10-1"]),
        "--out",
        str(tmp_path / "y"),
        "--select-on",
        "target",
        "--data-root",
        str(glyph_root),
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "needs --test" in proc.stderr


def test_table8_protocol_one_run_gives_target_selection_and_last_iterate_rows(glyph_root, pretrained, tmp_path):
    """What tools/reproduce/table8.sh does per seed: one run selected on the target's val classes,
    both domains' curves logged; best.pt and last.pt scored; report keeps them apart."""
    from metahyper.report import build_report, collect

    run = tmp_path / "target"
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], run, test=["glyphs-b"], select_on="target", first_order=True))
    assert {"glyphs-a_acc", "glyphs-b_acc"} <= set(read_csv(run / "val.csv")[0])  # Figure 5's two curves
    for name, checkpoint in (("best", run), ("last", run / "last.pt")):
        evaluate(
            EvalConfig(checkpoint=str(checkpoint), dataset="glyphs-b", shots=1, ways=3, queries=2, episodes=2,
                       data_root=str(glyph_root), device="cpu", progress=False, output=str(run / f"{name}.json"))
        )  # fmt: skip
    results = collect([run])
    assert sorted(r["selection"]["rule"] for r in results) == ["final", "target"]
    assert sorted(build_report(results).rows) == ["WRN-10-1, last iterate", "WRN-10-1, selected on glyphs-b val"]
