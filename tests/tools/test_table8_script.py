"""tools/reproduce/table8.sh: the paper's protocol by default, our alternatives by one setting, and
every meta-train / eval command line valid for `metahyper`."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import metahyper.train.meta_train
from metahyper.cli import main
from tests.tools.conftest import flag_value, run_script, script_commands

SMALL = {"SEEDS": "0", "RESOLUTIONS": "32", "MODELS": "hyper-wrn-16-4"}


def _run(tmp_path: Path, **env: str):
    return run_script("table8.sh", tmp_path, **{**SMALL, **env})


def _commands(tmp_path: Path, **env: str) -> list[list[str]]:
    return script_commands("table8.sh", tmp_path, **{**SMALL, **env})


_value = flag_value


def test_default_selects_on_the_target_logs_both_domains_and_scores_the_last_iterate(tmp_path, monkeypatch):
    commands = _commands(tmp_path)
    meta = [c for c in commands if c[0] == "meta-train"]
    assert len(meta) == 2  # 1 and 5 shots
    for cmd in meta:
        assert (_value(cmd, "--select-on"), _value(cmd, "--test"), _value(cmd, "--train")) == (
            "target",
            "miniimagenet",
            "fc100",
        )
        assert (_value(cmd, "--inner-steps"), _value(cmd, "--eval-inner-steps")) == ("50", "50")  # Sun et al.'s 50
        assert _value(cmd, "--init").endswith("pretrain/hyper-wrn-16-4/seed0")  # its best.pt
    scored = [_value(c, "--checkpoint") for c in commands if c[0] == "eval" and "to-mini" in _value(c, "--checkpoint")]
    assert sorted(Path(s).name for s in scored) == ["last.pt", "last.pt", "seed0", "seed0"]
    report = next(c for c in commands if c[0] == "report")
    assert [Path(p).name for p in report if p.startswith(str(tmp_path))][:2] == ["pretrain", "to-mini"]
    assert _value(report, "--markdown").endswith("table8.md")
    seen = []
    monkeypatch.setattr(
        metahyper.train.meta_train,
        "meta_train",
        lambda cfg, ctx: seen.append(cfg) or {"model": "m", "best_val_acc": None},
    )
    result = CliRunner().invoke(main, meta[0])
    assert result.exit_code == 0, result.output
    cfg = seen[0]
    assert (cfg.select_on, cfg.validation_domains(), cfg.eval_inner_steps, cfg.inner_checkpoint) == (
        "target",
        ["fc100", "miniimagenet"],
        50,
        4,
    )


def test_alternatives_are_one_setting_each(tmp_path):
    source = [c for c in _commands(tmp_path, SELECT_ON="source") if c[0] in ("meta-train", "report")]
    assert all(_value(c, "--select-on") == "source" for c in source if c[0] == "meta-train")
    assert all("/to-mini-source/" in _value(c, "--out") for c in source if c[0] == "meta-train")
    assert _value(source[-1], "--markdown").endswith("table8-source.md")
    steps = [c for c in _commands(tmp_path, EVAL_INNER_STEPS="100") if c[0] == "meta-train"]
    assert {_value(c, "--eval-inner-steps") for c in steps} == {"100"}
    last = [c for c in _commands(tmp_path, PRETRAINED="last") if c[0] == "meta-train"]
    assert all(_value(c, "--init").endswith("seed0/last.pt") for c in last)
    only_last = _commands(tmp_path, SELECT_ON="last")
    assert not any(_value(c, "--checkpoint").endswith("last.pt") for c in only_last if c[0] == "eval")
    for bad in ({"SELECT_ON": "fc100"}, {"PRETRAINED": "first"}):
        proc = _run(tmp_path, **bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "must be" in proc.stderr
