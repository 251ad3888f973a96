"""An option that would be ignored is refused in one line naming it: unknown keys of a ``--config``
file (or of a dict given to ``from_dict``), and the inner-loop options of ``eval`` under the linear
method (``--method linear``, or a pretrain checkpoint scored by default)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from click.testing import CliRunner

from metahyper import data
from metahyper.cli import main
from metahyper.config import EvalConfig, MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.train.eval_matrix import evaluate_matrix
from metahyper.train.evaluate import evaluate


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_config_file_refuses_unknown_keys(tmp_path):
    stored = {"stage": "pretrain", **asdict(PretrainConfig(dataset="fc100", out=str(tmp_path / "old")))}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**stored, "epochs_typo": 3, "zz_unrelated": 1}))
    message = _refused(["pretrain", "--config", str(path), "--out", str(tmp_path / "new")])
    assert f"--config {path} has unknown keys epochs_typo (did you mean epochs?), zz_unrelated:" in message
    assert "correct or remove them" in message
    assert not (tmp_path / "new").exists()
    # an eval result's stored config is checked the same way
    result = tmp_path / "eval.json"
    result.write_text(json.dumps({"config": {"stage": "eval", "checkpoint": "c", "shots_typo": [1]}}))
    assert "unknown key shots_typo (did you mean shots?)" in _refused(["eval", "--config", str(result)])


def test_from_dict_refuses_unknown_keys():
    with pytest.raises(UserError, match=r"^the pretrain config has an unknown key epoch \(did you mean epochs\?\)"):
        PretrainConfig.from_dict({"stage": "pretrain", "dataset": "fc100", "out": "r", "epoch": 3})
    # keys of renamed options are known (under --config too: tests/test_cli_options.py)
    old = {"stage": "meta-train", "train": "fc100", "init": "p", "out": "r", "inner_steps_eval": 15}
    assert MetaTrainConfig.from_dict(old).eval_inner_steps == 15


def _eval_args(checkpoint, glyph_root, tmp_path, *extra: str) -> list[str]:
    return [
        "eval",
        "--checkpoint",
        str(checkpoint),
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
        "--quiet",
        "-o",
        str(tmp_path / "e.json"),
        *extra,
    ]


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--inner-steps", "3"], "--eval-inner-steps/--inner-steps does not apply to a pretrain checkpoint"),
        (["--inner-lr", "0.5"], "--inner-lr does not apply to a pretrain checkpoint"),
        (["--bn", "transductive"], "--bn does not apply to a pretrain checkpoint"),
        (["--inner-lr", "0.5", "--bn", "frozen"], "--inner-lr, --bn do not apply to a pretrain checkpoint"),
        (["--method", "linear", "--inner-lr", "0.5"], "--inner-lr does not apply to --method linear"),
    ],
)
def test_eval_refuses_inner_loop_options_under_the_linear_method(pretrained, glyph_root, tmp_path, extra, named):
    message = _refused(_eval_args(pretrained["wrn-10-1"], glyph_root, tmp_path, *extra))
    assert named in message and "or pass --method maml" in message
    assert not (tmp_path / "e.json").exists()


def test_with_method_maml_the_options_apply_and_are_recorded(pretrained, glyph_root, tmp_path):
    args = _eval_args(pretrained["wrn-10-1"], glyph_root, tmp_path, "--method", "maml", "--inner-lr", "0.5")
    result = CliRunner().invoke(main, [*args, "--inner-steps", "1", "--bn", "transductive"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "e.json").read_text())["settings"]
    assert (settings["inner_lr"], settings["inner_steps"], settings["bn"]) == (0.5, 1, "transductive")


def test_refused_before_a_dataset_is_opened(pretrained, glyph_root, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("a dataset was opened before the options were checked")

    monkeypatch.setattr(data, "open_split", no_data)
    cfg = EvalConfig(
        checkpoint=str(pretrained["wrn-10-1"]),
        dataset="glyphs-a,glyphs-b",
        shots=[1, 2],
        inner_lr=0.5,
        data_root=str(glyph_root),
        device="cpu",
    )
    with pytest.raises(UserError, match="^--inner-lr does not apply to a pretrain checkpoint"):
        evaluate_matrix(cfg)
    cfg.dataset, cfg.shots = ["glyphs-b"], [1]
    with pytest.raises(UserError, match="^--inner-lr does not apply to a pretrain checkpoint"):
        evaluate(cfg)
    with pytest.raises(UserError, match="^--bn does not apply to --method linear"):
        EvalConfig(checkpoint="c", dataset="glyphs-b", method="linear", bn="frozen", data_root=str(glyph_root))
