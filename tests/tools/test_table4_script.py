"""tools/reproduce/table4.sh: its ImageNet commands are valid `metahyper pretrain` command lines."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import metahyper.train.pretrain
from metahyper.cli import main
from tests.tools.conftest import script_commands


def _commands(tmp_path: Path, **env: str) -> list[list[str]]:
    return script_commands("table4.sh", tmp_path, **env)


def test_imagenet_column_runs_the_section_5_2_recipe(tmp_path, monkeypatch):
    without = _commands(tmp_path)
    assert not any("imagenet" in cmd for cmd in without)
    ilsvrc = tmp_path / "ilsvrc"
    commands = [c for c in _commands(tmp_path, IMAGENET=str(ilsvrc)) if "imagenet" in c]
    assert [c[c.index("--model") + 1] for c in commands] == [
        "resnet-18",
        "hyper-resnet-18",
        "resnet-34",
        "hyper-resnet-34",
    ]
    seen = []
    monkeypatch.setattr(
        metahyper.train.pretrain, "pretrain", lambda cfg, ctx: seen.append(cfg) or {"model": "m", "best_val_acc": None}
    )
    for cmd in commands:
        result = CliRunner().invoke(main, cmd)
        assert result.exit_code == 0, result.output
    first, hyper = seen[0], seen[1]
    assert (first.dataset, first.data_root, first.model_stem, first.image_size) == (
        "imagenet",
        str(ilsvrc),
        "imagenet",
        224,
    )
    assert (
        first.epochs,
        first.lr,
        first.momentum,
        first.milestones,
        first.gamma,
        first.weight_decay,
        first.batch_size,
    ) == (100, 0.1, 0.9, [30, 60, 90], 0.1, 1e-4, 256)
    assert (hyper.variant, hyper.generated_l2) == (2, 6.25e-5)
