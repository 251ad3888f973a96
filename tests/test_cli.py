"""CLI commands of the models stage (other stages' commands are tested beside their packages)."""

import json

import torch
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.models import build_model
from metahyper.train.checkpoint import load_model, save_checkpoint


def test_models_table_lists_ours_beside_the_papers():
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["label"]: r for r in json.loads(result.output)}
    row = rows["Hyper-WRN-28-4 (1, C)"]
    assert abs(row["stored_params"] / 1.227e6 - 1) < 0.005 and row["paper_train_m"] == 1.22
    assert rows["Hyper-WRN-28-4 (2)"]["test_params"] == rows["WRN-28-4"]["train_params"]


def test_models_lists_every_family_and_its_names():
    from metahyper.models.registry import FAMILIES

    result = CliRunner().invoke(main, ["models", "--families"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines[1:]] == [
        *([f.name, f.usage] for f in FAMILIES.values()),
        ["hyper", "hyper-<name>"],
    ]


def test_export_writes_plain_model_with_same_outputs(tmp_path):
    model = build_model("hyper-wrn-10-1", variant=1, num_classes=5).eval()
    save_checkpoint(tmp_path / "run" / "best.pt", model)
    result = CliRunner().invoke(
        main, ["export", "--checkpoint", str(tmp_path / "run"), "-o", str(tmp_path / "plain.pt")]
    )
    assert result.exit_code == 0, result.output
    plain = load_model(tmp_path / "plain.pt", expect_name="wrn-10-1").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-5)


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(
        main, ["export", "--checkpoint", str(tmp_path / "bad.pt"), "-o", str(tmp_path / "o.pt")]
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "corrupt" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o.pt").exists()
