"""--tensorboard: the logged scalars as TensorBoard events; a one-line error without the package."""

import importlib.util
import sys

import pytest

from metahyper.config import MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.train.meta_train import meta_train
from metahyper.train.pretrain import pretrain

HAVE_TB = importlib.util.find_spec("tensorboard") is not None


def _events(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_missing_package_is_a_one_line_error_before_anything_is_written(glyph_root, pretrained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'metahyper\[tensorboard\]'"):
        pretrain(
            PretrainConfig(
                dataset="glyphs-a",
                out=str(tmp_path / "pre"),
                model="wrn-10-1",
                image_size=8,
                epochs=1,
                milestones=[],
                data_root=str(glyph_root),
                device="cpu",
                progress=False,
                tensorboard=True,
            )
        )
    assert not (tmp_path / "pre").exists()


@pytest.mark.skipif(not HAVE_TB, reason="tensorboard is not installed (extra [tensorboard])")
def test_scalars_match_the_logs(glyph_root, pretrained, tmp_path):
    pretrain(
        PretrainConfig(
            dataset="glyphs-a",
            out=str(tmp_path / "pre"),
            model="hyper-wrn-10-1",
            image_size=8,
            epochs=2,
            batch_size=64,
            milestones=[],
            data_root=str(glyph_root),
            device="cpu",
            progress=False,
            tensorboard=True,
        )
    )
    events = _events(tmp_path / "pre")
    history = read_csv(tmp_path / "pre" / "history.csv")
    assert [v for _, v in events["train_loss"]] == pytest.approx([float(r["train_loss"]) for r in history], rel=1e-6)
    assert {"lr", "val_acc", "ratio/embeddings/stage1"} <= set(events)
    meta_train(
        MetaTrainConfig(
            train="glyphs-a",
            init=str(pretrained["hyper-wrn-10-1"]),
            out=str(tmp_path / "meta"),
            ways=3,
            queries=2,
            meta_batch=2,
            iterations=2,
            inner_steps=1,
            eval_inner_steps=1,
            val_every=2,
            val_episodes=2,
            data_root=str(glyph_root),
            device="cpu",
            progress=False,
            tensorboard=True,
        )
    )
    events = _events(tmp_path / "meta")
    train = read_csv(tmp_path / "meta" / "train.csv")
    assert [s for s, _ in events["train/loss"]] == [1, 2]
    assert [v for _, v in events["train/loss"]] == pytest.approx([float(r["loss"]) for r in train], rel=1e-6)
    assert "train/movement/stages.1.0.conv2" in events and "val/glyphs-a_acc" in events
