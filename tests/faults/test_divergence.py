"""Divergence that stays finite (a loss that explodes to 1e16 without reaching inf) and unbounded
evaluation work (inner steps without an upper bound): both end in one line before anything of them
is saved or run."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import MAX_EPISODES, MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.meta import MAML
from metahyper.meta.settings import MAX_INNER_STEPS
from metahyper.models import build_model
from metahyper.train.meta_train import meta_train
from metahyper.train.pretrain import pretrain
from metahyper.train.run import BEST, CONFIG_FILE, LAST, loss_bound
from tests.conftest import tiny_meta_config


def _meta(root, init, out, **kw) -> MetaTrainConfig:
    return tiny_meta_config(root, init, out, **kw)


@pytest.mark.parametrize("first_order", [True, False], ids=["first-order", "second-order"])
def test_exploding_finite_loss_stops_meta_train_before_anything_is_saved(glyph_root, pretrained, tmp_path, first_order):
    out = tmp_path / "meta"
    cfg = _meta(glyph_root, pretrained["wrn-10-1"], out, inner_lr=1e9, first_order=first_order)
    with pytest.raises(UserError) as err:
        meta_train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("training diverged at iteration 1: the loss became ")
    loss = float(message.split("the loss became ")[1].split(",")[0])
    assert math.isfinite(loss) and loss > loss_bound(3)  # finite: the old NaN/inf rule let it through
    assert "lower --outer-lr / --inner-lr" in message
    assert (out / CONFIG_FILE).is_file()
    assert not (out / BEST).exists() and not (out / LAST).exists()


def test_exploding_loss_exits_2_from_the_command_line(glyph_root, pretrained, tmp_path):
    out = tmp_path / "meta"
    args = ["meta-train", "--train", "glyphs-a", "--test", "glyphs-b", "--init", str(pretrained["wrn-10-1"])]
    args += ["--out", str(out), "--ways", "3", "--shots", "1", "--queries", "2", "--meta-batch", "2"]
    args += ["--iterations", "2", "--inner-steps", "1", "--eval-inner-steps", "1", "--val-episodes", "2"]
    args += ["--inner-lr", "1e9", "--data-root", str(glyph_root), "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "training diverged at iteration 1" in result.output
    assert not (out / BEST).exists() and not (out / LAST).exists()


def test_loss_bound_lies_far_above_a_healthy_loss():
    assert loss_bound(2) == pytest.approx(100 * math.log(2))
    assert loss_bound(64) == pytest.approx(100 * math.log(64))
    assert loss_bound(5) > 100  # chance level's loss of 5 ways is 1.6


def test_pretrain_stops_on_an_exploding_finite_loss(glyph_root, tmp_path, monkeypatch):
    """The epoch's mean loss above the bound stops pretraining (here the bound is lowered below
    the loss of the first epoch, which every pretraining run has)."""
    import metahyper.train.pretrain as module

    monkeypatch.setattr(module, "loss_bound", lambda classes: 1e-3)
    out = tmp_path / "pre"
    cfg = PretrainConfig(
        dataset="glyphs-a", out=str(out), model="wrn-10-1", image_size=8, epochs=2, batch_size=64, milestones=[],
        data_root=str(glyph_root), device="cpu", progress=False,
    )  # fmt: skip
    with pytest.raises(UserError, match=r"training diverged at epoch 1: the loss became .*, above 0.001 .*lower --lr"):
        pretrain(cfg)
    assert not (out / BEST).exists() and not (out / LAST).exists()


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--checkpoint", "c", "--dataset", "glyphs-b", "--shots", "1", "--inner-steps", "1000000000"],
        ["eval", "--checkpoint", "c", "--dataset", "glyphs-b", "--shots", "1", "--head-steps", "1000000000"],
        ["meta-train", "--train", "glyphs-a", "--test", "glyphs-b", "--init", "p", "--out", "r"]
        + ["--eval-inner-steps", "1000000000"],
        ["meta-train", "--train", "glyphs-a", "--test", "glyphs-b", "--init", "p", "--out", "r"]
        + ["--inner-steps", "1000000000"],
    ],
    ids=["eval-inner-steps", "eval-head-steps", "meta-train-eval-inner-steps", "meta-train-inner-steps"],
)
def test_unbounded_inner_steps_are_refused_before_any_work(tmp_path, monkeypatch, args):
    _refused_before_any_work(tmp_path, monkeypatch, args, MAX_INNER_STEPS)


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--checkpoint", "c", "--dataset", "glyphs-b", "--shots", "1", "--episodes", "1000000000"],
        ["meta-train", "--train", "glyphs-a", "--test", "glyphs-b", "--init", "p", "--out", "r"]
        + ["--val-episodes", "1000000000"],
    ],
    ids=["eval-episodes", "meta-train-val-episodes"],
)
def test_unbounded_episodes_are_refused_before_any_work(tmp_path, monkeypatch, args):
    _refused_before_any_work(tmp_path, monkeypatch, args, MAX_EPISODES)


def _refused_before_any_work(tmp_path, monkeypatch, args, bound: int) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert f"at most {bound}" in result.output or f"<= {bound}" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_recording_unbounded_steps_is_refused():
    """A crafted checkpoint's MAML settings reach :class:`MAML`, which bounds the steps itself."""
    model = build_model("wrn-10-1", num_classes=3)
    with pytest.raises(UserError, match=f"inner steps must lie in 0..{MAX_INNER_STEPS}, got train 5, eval 10"):
        MAML(model, inner_steps=5, eval_inner_steps=10**9)
