import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import EvalConfig, MetaTrainConfig
from metahyper.data import EpisodeSampler, open_split
from metahyper.errors import UserError
from metahyper.train.evaluate import evaluate, mean_ci
from metahyper.train.meta_train import meta_train


def _eval(root, checkpoint, **kw) -> EvalConfig:
    base = dict(
        checkpoint=str(checkpoint),
        dataset="glyphs-b",
        shots=1,
        ways=3,
        queries=2,
        episodes=6,
        data_root=str(root),
        device="cpu",
        progress=False,
    )
    return EvalConfig(**{**base, **kw})


def test_mean_ci_is_1_96_std_over_sqrt_n():
    mean, ci = mean_ci([0.2, 0.4, 0.6, 0.8])
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(1.96 * math.sqrt(0.05) / 2)  # population std of the four values is sqrt(0.05)
    assert mean_ci([0.7] * 10) == (pytest.approx(0.7), 0.0)
    with pytest.raises(UserError):
        mean_ci([])


def test_every_checkpoint_sees_the_same_episodes(glyph_root, pretrained, tmp_path):
    hyper = evaluate(_eval(glyph_root, pretrained["hyper-wrn-10-1"], output=str(tmp_path / "h.json")))
    plain = evaluate(_eval(glyph_root, pretrained["wrn-10-1"], output=str(tmp_path / "p.json")))
    other = evaluate(_eval(glyph_root, pretrained["wrn-10-1"], seed=1, output=str(tmp_path / "o.json")))
    assert hyper.fingerprint == plain.fingerprint != other.fingerprint
    assert hyper.method == plain.method == "linear"  # pretrain-only baseline: frozen features, fitted head
    assert len(hyper.accuracies) == 6 and all(0 <= a <= 1 for a in hyper.accuracies)
    # the fingerprint stands for the episodes themselves: same seed, same tensors
    sampler = EpisodeSampler(open_split("glyphs-b", "test", root=glyph_root), 3, 1, 2, seed=0, image_size=8)
    again = EpisodeSampler(open_split("glyphs-b", "test", root=glyph_root), 3, 1, 2, seed=0, image_size=8)
    for i in range(6):
        assert all(torch.equal(a, b) for a, b in zip(sampler.episode(i), again.episode(i)))
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved["mean"] == pytest.approx(np.mean(saved["accuracies"]))
    assert saved["ci95"] == pytest.approx(1.96 * np.std(saved["accuracies"]) / math.sqrt(6))
    assert (
        evaluate(_eval(glyph_root, pretrained["hyper-wrn-10-1"], output=str(tmp_path / "h2.json"))).accuracies
        == hyper.accuracies
    )


def test_maml_eval_of_pretrain_and_meta_checkpoints(glyph_root, pretrained, tmp_path):
    pre = evaluate(
        _eval(
            glyph_root, pretrained["hyper-wrn-10-1"], method="maml", eval_inner_steps=2, output=str(tmp_path / "a.json")
        )
    )
    assert pre.method == "maml" and pre.settings["inner"] == ["embeddings", "classifier"]
    meta = tmp_path / "meta"
    meta_train(
        MetaTrainConfig(
            train="glyphs-a",
            test="glyphs-b",
            init=str(pretrained["hyper-wrn-10-1"]),
            out=str(meta),
            ways=3,
            queries=2,
            meta_batch=1,
            iterations=1,
            inner_steps=1,
            eval_inner_steps=3,
            val_every=0,
            data_root=str(glyph_root),
            device="cpu",
            progress=False,
        )
    )
    result = evaluate(_eval(glyph_root, meta))
    assert result.method == "maml" and result.settings["inner_steps"] == 3  # the run's --inner-steps-eval
    assert result.fingerprint == pre.fingerprint
    assert (meta / "eval-glyphs-b-test-3w1s-seed0.json").is_file()
    with pytest.raises(UserError, match="meta-trained 3-way"):
        evaluate(_eval(glyph_root, meta, ways=4))


def test_eval_cli(glyph_root, pretrained, tmp_path):
    runner = CliRunner()
    args = [
        "eval",
        "--checkpoint",
        str(pretrained["wrn-10-1"]),
        "--dataset",
        "glyphs-b",
        "--shots",
        "2",
        "--ways",
        "3",
        "--queries",
        "2",
        "--episodes",
        "4",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
        "-o",
        str(tmp_path / "r.json"),
    ]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "WRN-10-1 [linear] on glyphs-b test, 3-way 2-shot, 4 episodes:" in res.output
    assert json.loads((tmp_path / "r.json").read_text())["episodes"] == 4
    bad = runner.invoke(main, [*args[:-2], "--ways", "50"])
    assert bad.exit_code == 2 and "Error:" in bad.output
