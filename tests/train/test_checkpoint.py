import pytest
import torch

from metahyper.errors import UserError
from metahyper.models import build_model
from metahyper.train.checkpoint import load_checkpoint, load_model, save_checkpoint


def test_roundtrip_and_extra(tmp_path):
    model = build_model("hyper-wrn-10-1", variant=2, num_classes=4).eval()
    path = save_checkpoint(tmp_path / "run" / "last.pt", model, step=7, history=[1.0, 2.0])
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.extra == {"step": 7, "history": [1.0, 2.0]}
    loaded = ckpt.build_model().eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert load_model(path, expect_name="hyper-wrn-10-1").config == model.config
    assert list(tmp_path.joinpath("run").iterdir()) == [path]  # no temp files left behind


def test_wrong_architecture_corrupt_and_missing(tmp_path):
    model = build_model("wrn-10-1", num_classes=4)
    path = save_checkpoint(tmp_path / "a.pt", model)
    with pytest.raises(UserError, match="holds a wrn-10-1, not a wrn-16-1"):
        load_checkpoint(path, expect_name="wrn-16-1")
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a metahyper checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no checkpoint"):
        load_checkpoint(tmp_path / "empty")


def test_state_of_another_architecture_is_a_user_error(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", build_model("wrn-10-1", num_classes=4))
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["name"] = "wrn-10-2"
    torch.save(payload, path)
    with pytest.raises(UserError, match="does not match model wrn-10-2"):
        load_model(path)
