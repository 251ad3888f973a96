import json

import numpy as np
import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.io import write_csv, write_json
from metahyper.plots import curves_figure, curves_plot, movement_figure, movement_plot
from metahyper.train.run import save_config

LAYERS = ["stages.0.0.conv1", "stages.0.0.conv2", "stages.1.0.conv1", "stages.1.0.conv2"]


def _meta_run(path, label: str, scale: float, moving: list[str], n: int = 12):
    save_config(path, MetaTrainConfig(train="glyphs-a", test="glyphs-b", init="pre", out=str(path), shots=5))
    rng = np.random.default_rng(0)
    write_csv(
        path / "movement.csv",
        [
            {"iteration": i + 1, **{k: (scale * (1 + rng.random()) if k in moving else 0.0) for k in LAYERS}}
            for i in range(n)
        ],
        ["iteration", *LAYERS],
    )
    write_csv(
        path / "train.csv", [{"iteration": i + 1, "loss": 1.5 - 0.05 * i, "acc": 0.3, "lr": 1e-3} for i in range(n)]
    )
    write_csv(
        path / "val.csv",
        [
            {
                "iteration": i,
                "val_acc": 0.3 + 0.01 * i,
                "val_ci95": 0.02,
                "train_loss": 1.0,
                "train_acc": 0.5,
                "lr": 1e-3,
            }
            for i in (4, 8, 12)
        ],
    )
    write_json(path / "curves.json", {"model": label, "validation": [], "layers": LAYERS})
    return path


def _pretrain_run(path, model: str):
    save_config(path, PretrainConfig(dataset="glyphs-a", out=str(path), model=model))
    group = "embeddings" if model.startswith("hyper-") else "backbone"
    history = [
        {
            "epoch": e,
            "lr": 0.1,
            "train_loss": 2.0 / e,
            "train_acc": 0.1 * e,
            "val_acc": 0.1 * e,
            **{f"ratio/{group}/stage{s}": 100.0 * s / e for s in (1, 2, 3)},
            "ratio/classifier/fc": 3.0,
        }
        for e in (1, 2, 3)
    ]
    write_json(path / "history.json", history)
    return path


@pytest.fixture
def runs(tmp_path):
    hyper = _meta_run(
        tmp_path / "hyper", "Hyper-WRN-10-2 (1)", 1e-1, ["stages.0.0.conv1", "stages.0.0.conv2", "stages.1.0.conv2"]
    )
    plain = _meta_run(tmp_path / "plain", "WRN-10-2", 1e-3, LAYERS)
    return hyper, plain


def test_movement_figure_one_line_per_run_on_log_axes(runs, tmp_path):
    fig = movement_figure(runs)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [
        "stage 1 block 1 conv 1",
        "stage 1 block 1 conv 2",
        "stage 2 block 1 conv 1",
        "stage 2 block 1 conv 2",
    ]
    assert all(ax.get_yscale() == "log" for ax in axes)
    labels = [[line.get_label() for line in ax.get_lines()] for ax in axes]
    assert labels[0] == ["Hyper-WRN-10-2 (1)", "WRN-10-2"]
    assert labels[2] == ["WRN-10-2"]  # the hyper run's plain stage-first conv does not move: no line on a log axis
    chosen = movement_figure(runs, layers=["stages.1.0.conv2"], smooth=3)
    assert len(chosen.axes) == 1 and len(chosen.axes[0].get_lines()[0].get_ydata()) == 10  # 12 iterations, window 3
    out = movement_plot(runs, tmp_path / "fig" / "movement.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="not in the runs"):
        movement_figure(runs, layers=["stages.9.9.conv1"])
    with pytest.raises(UserError, match="paper's Figure 4 layers"):
        movement_figure(runs, paper_layers=True)


def test_curves_figure_meta_and_pretrain(runs, tmp_path):
    pre_h, pre_p = _pretrain_run(tmp_path / "pre-h", "hyper-wrn-10-2"), _pretrain_run(tmp_path / "pre-p", "wrn-10-2")
    fig = curves_figure([*runs, pre_h, pre_p])
    titles = [ax.get_title() for ax in fig.axes]
    assert (
        any("Figure 5" in t for t in titles)
        and any("Figure 3" in t for t in titles)
        and any("Figure 2" in t for t in titles)
    )
    val = next(ax for ax in fig.axes if "Figure 5" in ax.get_title())
    assert [line.get_label() for line in val.get_lines()] == [
        "Hyper-WRN-10-2 (1), glyphs-a val",
        "WRN-10-2, glyphs-a val",
    ]
    assert list(val.get_lines()[0].get_ydata()) == pytest.approx([34.0, 38.0, 42.0])
    ratio = next(ax for ax in fig.axes if "Figure 2" in ax.get_title())
    assert len(ratio.get_lines()) == 6  # three stages of each run
    assert curves_plot([pre_h], tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_commands(runs, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        main, ["movement-plot", *map(str, runs), "-o", str(tmp_path / "m.png"), "--layer", "stages.0.0.conv2"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m.png").is_file()
    res = runner.invoke(main, ["curves", *map(str, runs), "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 0 and (tmp_path / "c.png").is_file()
    (tmp_path / "empty").mkdir()
    res = runner.invoke(main, ["curves", str(tmp_path / "empty"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "config.json" in res.output
    assert json.loads((runs[0] / "config.json").read_text())["stage"] == "meta-train"


def test_validation_panel_draws_every_validated_dataset(runs):
    """Figure 5's cross-domain curves: a run that validated on its source and its target draws both,
    the selection dataset solid, in the run's colour."""
    hyper, _ = runs
    rows = [
        {"iteration": i, "val_acc": 0.3 + 0.01 * i, "val_ci95": 0.02, "glyphs-a_acc": 0.3 + 0.01 * i,
         "glyphs-a_ci95": 0.02, "glyphs-b_acc": 0.2 + 0.02 * i, "glyphs-b_ci95": 0.03, "train_loss": 1.0,
         "train_acc": 0.5, "lr": 1e-3}
        for i in (4, 8, 12)
    ]  # fmt: skip
    write_csv(hyper / "val.csv", rows)
    val = next(ax for ax in curves_figure([hyper]).axes if "Figure 5" in ax.get_title())
    lines = {line.get_label(): line for line in val.get_lines()}
    assert set(lines) == {"Hyper-WRN-10-2 (1), glyphs-a val", "Hyper-WRN-10-2 (1), glyphs-b val"}
    target = lines["Hyper-WRN-10-2 (1), glyphs-b val"]
    assert list(target.get_ydata()) == pytest.approx([28.0, 36.0, 44.0]) and target.get_linestyle() == "--"
    assert lines["Hyper-WRN-10-2 (1), glyphs-a val"].get_linestyle() == "-"
    assert target.get_color() == lines["Hyper-WRN-10-2 (1), glyphs-a val"].get_color()
    assert "glyphs-a, glyphs-b val" in val.get_title()


def test_validation_panel_names_the_validated_dataset():
    from metahyper.plots import _validated_on

    assert _validated_on({"train": "fc100", "test": ["miniimagenet"], "select_on": "source"}) == "fc100"
    assert _validated_on({"train": "fc100", "test": ["miniimagenet"], "select_on": "target"}) == "miniimagenet"
    assert _validated_on({"train": "fc100", "test": "miniimagenet"}) == "miniimagenet"  # runs before --select-on


def test_learned_rates_heat_map(tmp_path):
    """--rates: one row per adapted parameter, one column per step (lslr) or the mean (meta-sgd),
    read from the run's best.pt; a run without learned rates is a one-line error."""
    import torch

    from metahyper.models import build_model
    from metahyper.plots import learned_rates
    from metahyper.train.checkpoint import save_checkpoint

    model = build_model("wrn-10-1", num_classes=3)
    lslr = {"lrs.fc/weight": torch.tensor([0.1, 0.2, 0.3]), "lrs.fc/bias": torch.tensor([0.4, 0.5, 0.6])}
    sgd = {"lrs.fc/weight": torch.full((3, 64), 0.25), "lrs.fc/bias": torch.full((3,), 0.5)}
    for name, rule, state in (("lslr", "lslr", lslr), ("msgd", "meta-sgd", sgd), ("plain", "sgd", {})):
        (tmp_path / name).mkdir()
        save_checkpoint(tmp_path / name / "best.pt", model, stage="meta-train", maml={"inner_rule": rule},
                        inner_rule=state)  # fmt: skip
    rule, names, rates = learned_rates(tmp_path / "lslr")
    assert rule == "lslr" and names == ["fc.weight", "fc.bias"]
    assert np.allclose(rates, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    assert np.allclose(learned_rates(tmp_path / "msgd")[2], [[0.25], [0.5]])
    out = tmp_path / "rates.png"
    res = CliRunner().invoke(main, ["movement-plot", str(tmp_path / "lslr"), str(tmp_path / "msgd"), "--rates",
                                    "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="inner rule 'sgd' learns no rates"):
        learned_rates(tmp_path / "plain")
