"""``--head proto`` and ``--support-chunk`` end to end on the offline glyphs: meta-train and resume,
evaluate at the trained ways and at other ways (the head is built at each episode's width), a
learned head refusing other ways, and the CLI's one-line refusals."""

from __future__ import annotations

import pytest
import torch

from metahyper.config import EvalConfig
from metahyper.errors import UserError
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.evaluate import evaluate
from metahyper.train.meta_train import meta_train
from tests.train.test_meta_train import _cfg


def _eval(root, run, out, **kw):
    base = dict(checkpoint=str(run), dataset="glyphs-b", shots=1, ways=3, queries=2, episodes=2,
                data_root=str(root), device="cpu", progress=False, output=str(out))  # fmt: skip
    return evaluate(EvalConfig(**{**base, **kw}))


@pytest.mark.parametrize("model", ["hyper-wrn-10-1", "wrn-10-1"])
def test_proto_head_meta_trains_resumes_and_evaluates_at_any_ways(glyph_root, pretrained, tmp_path, model):
    kw = dict(head="proto", iterations=2, save_every=1)
    init = pretrained[model]
    meta_train(_cfg(glyph_root, init, tmp_path / "full", **kw))

    def stop(it):
        if it == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(_cfg(glyph_root, init, tmp_path / "cut", **kw), on_step=stop)
    meta_train(_cfg(glyph_root, init, tmp_path / "cut", resume=True, **kw))
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(v, cut.state_dict[k]) for k, v in full.state_dict.items())
    assert full.extra["maml"]["head"] == "proto"
    before = load_checkpoint(init).state_dict
    assert any(not torch.equal(before[k], v) for k, v in full.state_dict.items() if not k.startswith("fc."))
    for ways in (3, 4):  # trained 3-way; the head is built at the episode's width
        result = _eval(glyph_root, tmp_path / "full", tmp_path / f"e{ways}.json", ways=ways)
        assert result.settings["head"] == "proto" and result.ways == ways and 0 <= result.mean <= 1


def test_learned_head_refuses_other_ways_and_proto_or_chunks_override_it(glyph_root, pretrained, tmp_path):
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run"))
    with pytest.raises(UserError, match="meta-trained 3-way with a learned head.*--head zero\\|proto"):
        _eval(glyph_root, tmp_path / "run", tmp_path / "a.json", ways=4)
    plain = _eval(glyph_root, tmp_path / "run", tmp_path / "b.json", ways=4, head="proto", bn="frozen")
    chunked = _eval(glyph_root, tmp_path / "run", tmp_path / "c.json", ways=4, head="proto", bn="frozen",
                    support_chunk=3)  # fmt: skip
    assert chunked.settings["support_chunk"] == 3 and plain.settings["head"] == "proto"
    assert chunked.accuracies == pytest.approx(plain.accuracies)  # the same adaptation, 3 images at a time


def test_cli_takes_head_proto_and_refuses_chunks_under_batch_statistics(glyph_root, pretrained, tmp_path, cli):
    common = ["--data-root", str(glyph_root), "--device", "cpu", "--ways", "3", "--shots", "1", "--queries", "2"]
    run = ["meta-train", "--train", "glyphs-a", "--init", str(pretrained["wrn-10-1"]), "--iterations", "1",
           "--inner-steps", "1", "--meta-batch", "2", "--val-every", "0", *common]  # fmt: skip
    proc = cli(*run, "--out", str(tmp_path / "bad"), "--support-chunk", "2", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "add --bn frozen" in proc.stderr
    assert not (tmp_path / "bad").exists()
    cli(*run, "--out", str(tmp_path / "run"), "--head", "proto", "--first-order", "--bn", "frozen",
        "--support-chunk", "2")  # fmt: skip
    stored = load_checkpoint(tmp_path / "run" / "last.pt").extra["maml"]
    assert stored["head"] == "proto" and stored["support_chunk"] == 2 and stored["bn"] == "frozen"
