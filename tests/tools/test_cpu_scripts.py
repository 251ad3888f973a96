"""tools/reproduce/*_cpu.sh, the CPU miniatures on the built-in glyphs: every command line valid for
`metahyper` (each stage replaced by a recorder), the shared pretraining of cpu_common.sh, and each
script's own protocol."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.tools.conftest import flag_value, replay_commands, run_script


def _commands(name: str, tmp_path: Path, **env: str) -> list[list[str]]:
    """The command lines of ``name`` with ``SEEDS=0``: the script's own, then each lane's log."""
    proc = run_script(name, tmp_path, SEEDS="0", **env)
    assert proc.returncode == 0, proc.stderr
    runs = tmp_path / "runs"
    lines = proc.stdout.splitlines()
    for log in sorted(runs.glob("lane-*.log")):
        lines += log.read_text().splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("metahyper ")]


@pytest.mark.parametrize(
    ("script", "meta_per_model"),
    [("table8_cpu.sh", 2), ("algorithms_cpu.sh", 12), ("meta_dataset_cpu.sh", 2)],
)
def test_every_command_is_valid_and_the_pretraining_shared(tmp_path, monkeypatch, script, meta_per_model):
    commands = _commands(script, tmp_path)
    seen = replay_commands(commands, monkeypatch, tmp_path)
    assert [(name, kw["image_size"]) for name, kw in seen["prepare"]] == [("glyphs", 16)]
    pre = seen["pretrain"]
    assert sorted(cfg.model for cfg in pre) == ["hyper-wrn-10-1", "wrn-10-1"]
    assert {(cfg.dataset, cfg.epochs, tuple(cfg.milestones), cfg.batch_size, cfg.lr, cfg.seed) for cfg in pre} == {
        ("glyphs-a", 6, (3, 4), 64, 0.05, 0)
    }
    assert len(seen["meta-train"]) == 2 * meta_per_model
    for cfg in seen["meta-train"]:
        assert (cfg.train, cfg.select_on, cfg.meta_batch, cfg.init.endswith("pretrain")) == (
            "glyphs-a",
            "source",
            2,
            True,
        )
        assert (Path(cfg.out) / "meta-train.seconds").is_file()  # each meta-training's wall time
    assert len(seen["eval"]) == len(seen["meta-train"])
    assert all(cfg.split == "test" and cfg.seed == 0 and cfg.episodes == 100 for cfg in seen["eval"])
    assert (tmp_path / "runs" / "wall-time.txt").is_file()


def test_meta_dataset_proxy_trains_fo_proto_maml_on_variable_episodes_and_tests_both_domains(tmp_path, monkeypatch):
    commands = _commands("meta_dataset_cpu.sh", tmp_path)
    seen = replay_commands(commands, monkeypatch, tmp_path)
    for cfg in seen["meta-train"]:
        assert (cfg.episodes, cfg.head, cfg.first_order, cfg.ways, cfg.shots) == ("variable", "proto", True, None, None)
        assert (cfg.inner_lr, cfg.inner_steps, cfg.eval_inner_steps, cfg.iterations) == (0.01, 5, 5, 40)
    assert sorted(cfg.algorithm for cfg in seen["meta-train"]) == ["maml", "maml", "meta-sgd", "meta-sgd"]
    assert {(cfg.benchmark, cfg.ways) for cfg in seen["eval"]} == {("glyphs-a,glyphs-b", None)}
    report = next(c for c in commands if c[0] == "report")
    evals = [flag_value(c, "-o") for c in commands if c[0] == "eval"]
    assert sorted(p for p in report if p.endswith(".json")) == sorted(evals)
    assert flag_value(report, "--markdown").endswith("table.md")
