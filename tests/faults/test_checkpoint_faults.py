"""Damaged, crafted and diverged checkpoints: one-line errors on load, never silently wrong weights."""

from __future__ import annotations

import pytest
import torch

from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train.checkpoint import load_checkpoint, save_checkpoint
from metahyper.train.memory import ENV, footprint


def _saved(tmp_path, name="a.pt"):
    model = build_model("wrn-10-1", num_classes=4)
    return model, save_checkpoint(tmp_path / name, model, state={"step": torch.arange(3)})


def test_flipped_bytes_inside_a_tensor_fail_the_checksum(tmp_path):
    model, path = _saved(tmp_path)
    data = bytearray(path.read_bytes())
    weight = model.fc.weight.detach().numpy().tobytes()
    at = bytes(data).find(weight)
    assert at > 0  # torch stores tensor bytes uncompressed
    data[at + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="fails its checksum"):
        load_checkpoint(path)


def test_checkpoint_without_checksum_still_loads(tmp_path):
    model, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    del payload["checksum"]
    torch.save(payload, path)
    loaded = load_checkpoint(path).build_model()
    assert torch.equal(loaded.fc.weight, model.fc.weight)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.pop("state_dict"), "lacks a model_config, state_dict or extra"),
        (lambda p: p.update(state_dict=[1, 2]), "lacks a model_config, state_dict or extra"),
        (lambda p: p.update(model_config="wrn-10-1"), "lacks a model_config"),
        (lambda p: p["model_config"].update(num_classes="4"), "num_classes='4' is not a int"),
    ],
)
def test_crafted_payloads_are_one_line_errors(tmp_path, damage, message):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    damage(payload)
    torch.save(payload, path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_nonfinite_weights_are_refused(tmp_path):
    model = build_model("wrn-10-1", num_classes=4)
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", model)
    with pytest.raises(UserError, match="non-finite weights .* fc.weight.*lower learning rate"):
        load_checkpoint(path)


def test_huge_architecture_is_refused_before_it_is_built(tmp_path, monkeypatch):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["name"] = "wrn-10-4000"  # 11 KB on disk, ~5e10 parameters
    payload.pop("checksum")
    torch.save(payload, path)
    monkeypatch.setenv(ENV, "4")
    with pytest.raises(UserError, match=r"model wrn-10-4000 .* needs about .* GB, more than the 4.0 GB"):
        load_checkpoint(path).build_model()
    assert footprint(load_checkpoint(path).model_config).params > 4e10
    with pytest.raises(UserError, match="6n\\+4 in \\[10, 1000\\]"):
        build_model("wrn-10000-1")
