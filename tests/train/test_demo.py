import json

import pytest

from metahyper.config import DemoConfig
from metahyper.demo import run_demo
from metahyper.errors import UserError


def test_demo_end_to_end_reduced(glyph_root, tmp_path):
    cfg = DemoConfig(
        out=str(tmp_path / "demo"),
        models=["wrn-10-1", "hyper-wrn-10-1"],
        image_size=8,
        queries=5,
        pretrain_epochs=2,
        meta_iterations=4,
        meta_batch=2,
        val_every=2,
        val_episodes=4,
        eval_episodes=20,
        device="cpu",
        data_root=str(glyph_root),
        progress=False,
    )
    lines = []
    summary = run_demo(cfg, echo=lines.append)
    out = tmp_path / "demo"
    rows = {r["model"]: r for r in summary["rows"]}
    assert set(rows) == {
        "WRN-10-1",
        "Hyper-WRN-10-1 (1)",
        "WRN-10-1, pretrain only (linear head)",
        "Hyper-WRN-10-1 (1), pretrain only (linear head)",
    }
    for model in ("WRN-10-1", "Hyper-WRN-10-1 (1)"):  # both meta-trained models beat chance (1/5); no winner asserted
        for shots in (1, 5):
            assert rows[model][f"{shots}shot"] > summary["chance"], (model, shots, rows[model])
            assert 0 < rows[model][f"{shots}shot_ci95"] < 0.5
    for name in ("summary.json", "summary.csv", "table.txt", "movement.png", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["rows"] == summary["rows"]
    assert any("1-shot" in line and "5-shot" in line for line in lines)  # the Table-8-style header was printed
    for model in ("wrn-10-1", "hyper-wrn-10-1"):
        assert (out / model / "pretrain" / "best.pt").is_file() and (out / model / "meta" / "movement.csv").is_file()
    with pytest.raises(UserError, match="--force"):
        run_demo(cfg, echo=lines.append)
