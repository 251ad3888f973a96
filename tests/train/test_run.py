"""The run directory's owner: checks before start, config.json, last.pt with RNG state, main-only writes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from metahyper.config import PretrainConfig
from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train.run import RESUME_FREE, Run, read_config, seed_everything


def _cfg(out, **kw) -> PretrainConfig:
    return PretrainConfig(dataset="glyphs-a", out=str(out), model="wrn-10-1", **kw)


def test_fresh_run_writes_config_and_refuses_an_existing_run(tmp_path):
    out = tmp_path / "run"
    run = Run(out, _cfg(out))
    assert not out.exists()  # checking writes nothing
    run.start()
    config = read_config(out)
    assert config["stage"] == "pretrain" and config["out"] == str(out) and config["milestones"] == [60, 120, 160]
    run.write_json("x.json", {"a": 1})
    run.write_csv("x.csv", [{"i": 1}])
    assert json.loads((out / "x.json").read_text()) == {"a": 1} and (out / "x.csv").read_text().startswith("i")
    run.save("best.pt", build_model("wrn-10-1", num_classes=3))
    with pytest.raises(UserError, match="holds a run that stopped before its first last.pt; pass --resume"):
        Run(out, _cfg(out))
    run.save_last(build_model("wrn-10-1", num_classes=3), {})
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        Run(out, _cfg(out))


def test_resume_needs_last_pt_and_the_same_options(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UserError, match="holds no run to resume; drop --resume"):
        Run(out, _cfg(out, resume=True))
    run = Run(out, _cfg(out))
    run.start()
    model = build_model("wrn-10-1", num_classes=3)
    seed_everything(1)
    run.save_last(model, {"step": 7}, epoch=2)
    after = (torch.rand(3), np.random.rand(), random.random())
    with pytest.raises(UserError, match="different options.*lr"):
        Run(out, _cfg(out, resume=True, lr=0.5))
    assert {"device", "num_workers", "progress", "data_root"} <= RESUME_FREE
    resumed = Run(out, _cfg(out, resume=True, device="cpu", num_workers=2, progress=False))
    other = build_model("wrn-10-1", num_classes=3)
    extra = resumed.restore(other)
    assert extra["epoch"] == 2 and extra["state"]["step"] == 7
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    again = (torch.rand(3), np.random.rand(), random.random())  # every RNG continues where last.pt left it
    assert torch.equal(after[0], again[0]) and after[1:] == again[1:]


def test_other_ranks_write_nothing(tmp_path):
    out = tmp_path / "run"
    run = Run(out, _cfg(out), is_main=False)
    run.start()
    run.write_json("x.json", {})
    run.write_text("x.txt", "x")
    run.save_last(build_model("wrn-10-1", num_classes=3), {})
    assert not out.exists()


def test_resume_of_a_run_written_before_an_option_existed_or_was_renamed(tmp_path):
    """A config.json without a later option (it ran with the default) or under a former key still
    resumes with the same options; a different value is still refused."""
    out = tmp_path / "run"
    run = Run(out, _cfg(out))
    run.start()
    run.save_last(build_model("wrn-10-1", num_classes=3), {})
    stored = json.loads((out / "config.json").read_text())
    stored.pop("pad_mode")  # as if written before --pad-mode existed
    stored["d"] = stored.pop("d")  # --d: renamed flag, same key
    (out / "config.json").write_text(json.dumps(stored))
    Run(out, _cfg(out, resume=True))
    with pytest.raises(UserError, match="different options.*pad_mode"):
        Run(out, _cfg(out, resume=True, pad_mode="zeros"))
