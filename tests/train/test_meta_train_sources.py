"""Meta-training on several sources and on Meta-Dataset's variable-way variable-shot episodes
(--train a,b / md-all, --episodes variable, --source-weights), on the offline glyph caches:
glyphs-a and glyphs-b stand in for two Meta-Dataset sources."""

import json
import math

import pytest
import torch

from metahyper.config import MetaTrainConfig
from metahyper.data.sources.meta_dataset import TRAINING_SOURCES
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.meta_train import meta_train
from tests.conftest import tiny_meta_config

TWO = "glyphs-a,glyphs-b"


def _cfg(root, init, out, **kw) -> MetaTrainConfig:
    base = dict(train=TWO, test=[], episodes="variable", head="zero", bn="frozen", iterations=3, save_every=1)
    base.update(ways=None, shots=None, queries=None)  # none given: variable episodes draw them
    return tiny_meta_config(root, init, out, **{**base, **kw})


def test_variable_episodes_from_two_sources_validate_each_and_select_on_their_mean(glyph_root, pretrained, tmp_path):
    summary = meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run", val_every=2, val_episodes=3))
    rows = read_csv(tmp_path / "run" / "val.csv")
    assert [int(r["iteration"]) for r in rows] == [2, 3]
    for r in rows:
        a, b = float(r["glyphs-a_acc"]), float(r["glyphs-b_acc"])
        assert float(r["val_acc"]) == pytest.approx((a + b) / 2)
        ci = math.hypot(float(r["glyphs-a_ci95"]), float(r["glyphs-b_ci95"])) / 2
        assert float(r["val_ci95"]) == pytest.approx(ci)
    best = load_checkpoint(tmp_path / "run")
    assert best.path.name == "best.pt" and best.extra["val_acc"] == pytest.approx(summary["best_val_acc"])
    assert best.extra["selection"]["dataset"] == TWO and best.extra["selection"]["datasets"] == ["glyphs-a", "glyphs-b"]
    assert best.extra["train_datasets"] == ["glyphs-a", "glyphs-b"] and best.extra["episodes"] == "variable"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: config[k] for k in ("train", "episodes", "source_weights", "head")} == {
        "train": TWO,
        "episodes": "variable",
        "source_weights": "uniform",
        "head": "zero",
    }


@pytest.mark.parametrize(("head", "algorithm"), [("zero", "maml"), ("proto", "maml"), ("zero", "meta-sgd")])
def test_variable_multi_source_run_resumes_bit_identically(glyph_root, pretrained, tmp_path, head, algorithm):
    kw = dict(head=head, algorithm=algorithm, source_weights="size", val_every=2, val_episodes=2, seed=3)
    init = pretrained["hyper-wrn-10-1"]
    meta_train(_cfg(glyph_root, init, tmp_path / "full", **kw))

    def stop(it):
        if it == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(_cfg(glyph_root, init, tmp_path / "cut", **kw), on_step=stop)
    meta_train(_cfg(glyph_root, init, tmp_path / "cut", resume=True, **kw))
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert full.extra["iteration"] == cut.extra["iteration"] == 3
    assert all(torch.equal(v, cut.state_dict[k]) for k, v in full.state_dict.items())
    rule = full.extra["inner_rule"]
    assert all(torch.equal(v, cut.extra["inner_rule"][k]) for k, v in rule.items())
    if algorithm == "meta-sgd":  # the head's rates: one row, shared by the classes of every episode
        assert rule["lrs.fc/weight"].shape[0] == rule["lrs.fc/bias"].shape[0] == 1
    for name in ("train.csv", "val.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "cut" / name).read_text(), name


def test_variable_episodes_differ_in_ways_and_shots(glyph_root, pretrained, tmp_path, monkeypatch):
    from metahyper.meta import MAML

    seen: list[tuple[int, int]] = []
    real = MAML.meta_step

    def spy(self, tasks, **kw):
        seen.extend((int(t.support_y.max()) + 1, len(t.support_y)) for t in tasks)
        return real(self, tasks, **kw)

    monkeypatch.setattr(MAML, "meta_step", spy)
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run", train="glyphs-b", val_every=0, iterations=4))
    assert len(seen) == 8 and all(5 <= ways <= 27 for ways, _ in seen)
    assert len(set(seen)) > 1  # not one shape


@pytest.mark.parametrize("kw", [dict(ways=5, head="learned"), dict(shots=2, queries=3), dict(ways=6, queries=2)])
def test_counts_given_with_variable_episodes_are_fixed_and_the_rest_drawn(
    glyph_root, pretrained, tmp_path, monkeypatch, kw
):
    from metahyper.meta import MAML

    seen: list[tuple[int, int, int]] = []
    real = MAML.meta_step

    def spy(self, tasks, **kwargs):
        for t in tasks:
            ways = int(t.support_y.max()) + 1
            seen.append((ways, len(t.support_y), len(t.query_y)))
        return real(self, tasks, **kwargs)

    monkeypatch.setattr(MAML, "meta_step", spy)
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run", train="glyphs-b", val_every=0, **kw))
    assert len(seen) == 6
    if "ways" in kw:
        assert {w for w, _, _ in seen} == {kw["ways"]}
    else:
        assert len({w for w, _, _ in seen}) > 1  # drawn
    if "shots" in kw:
        assert all(s == w * kw["shots"] for w, s, _ in seen)
    else:
        assert len({s / w for w, s, _ in seen}) > 1  # drawn
    if "queries" in kw:
        assert all(q == w * kw["queries"] for w, _, q in seen)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: config[k] for k in ("ways", "shots", "queries")} == {k: kw.get(k) for k in ("ways", "shots", "queries")}


def test_fixed_episodes_from_two_sources_keep_the_learned_head(glyph_root, pretrained, tmp_path):
    meta_train(
        _cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run", episodes="fixed", head="learned", ways=3, queries=2)
    )
    rows = read_csv(tmp_path / "run" / "val.csv")
    assert len(rows) == 3 and all({"glyphs-a_acc", "glyphs-b_acc"} <= set(r) for r in rows)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            dict(head="learned"),
            "--head learned is a classifier of fixed width; add --head zero or --head proto, or fix",
        ),
        (dict(backend="vmap"), "--backend vmap batches tasks of one shape"),
        (dict(train="glyphs-a,glyphs-a"), "--train lists a dataset twice"),
        (dict(train=","), "names no dataset"),
        (dict(train="glyphs-a,nope"), "--train: .*nope"),
        (dict(train="glyphs-a", source_weights="size"), "--source-weights size weighs several --train datasets"),
    ],
)
def test_what_cannot_take_variable_or_several_sources_is_refused_in_one_line(glyph_root, tmp_path, kw, message):
    with pytest.raises(UserError, match=message) as err:
        _cfg(glyph_root, tmp_path / "init", tmp_path / "run", **kw)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_md_all_stands_for_meta_datasets_eight_training_sources(glyph_root, tmp_path):
    cfg = _cfg(glyph_root, tmp_path / "init", tmp_path / "run", test=["glyphs-b"])
    cfg.train = "md-all"
    assert cfg.train_sources() == list(TRAINING_SOURCES) and len(TRAINING_SOURCES) == 8
    assert cfg.validation_domains() == [*TRAINING_SOURCES, "glyphs-b"]
    cfg.train = "glyphs-a, md-all"
    assert cfg.train_sources() == ["glyphs-a", *TRAINING_SOURCES]


def test_memory_check_is_fed_the_largest_possible_episode(glyph_root, pretrained, tmp_path, monkeypatch):
    monkeypatch.setenv("METAHYPER_MAX_MEMORY_GB", "0.001")
    # glyphs-b: 27 train classes of 12 images: up to 27 ways, 27 x 12 support (under 500) and,
    # with 27 ways, 27 x 6 queries; its val split (9 classes) holds less
    with pytest.raises(UserError, match=r"meta-batches of 2 tasks of up to 486 images of 8px") as err:
        meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "run", train="glyphs-b"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("kw", [dict(), dict(train="glyphs-a", episodes="fixed", ways=3, shots=1, queries=2)])
def test_in_memory_or_in_place_meta_trains_the_same_model(glyph_root, pretrained, tmp_path, kw):
    init = pretrained["wrn-10-1"]
    for mode in ("yes", "no"):
        meta_train(_cfg(glyph_root, init, tmp_path / mode, in_memory=mode, val_every=2, val_episodes=2, **kw))
    ram, disk = (load_checkpoint(tmp_path / mode / "last.pt") for mode in ("yes", "no"))
    assert all(torch.equal(v, disk.state_dict[k]) for k, v in ram.state_dict.items())
    for name in ("train.csv", "val.csv"):
        assert (tmp_path / "yes" / name).read_text() == (tmp_path / "no" / name).read_text(), name


def test_the_memory_check_counts_one_support_chunk_where_one_is_alive(glyph_root, pretrained, tmp_path, monkeypatch):
    seen: dict[str, int] = {}

    def recorded(key):
        def check_step(*args, alive: int, **kwargs):
            seen[key] = alive
            raise UserError("recorded")

        return check_step

    orders = {"second": {}, "second, checkpointed": dict(inner_checkpoint=1), "first": dict(first_order=True)}
    for key, kw in orders.items():
        monkeypatch.setattr("metahyper.train.meta_train.check_step", recorded(key))
        with pytest.raises(UserError, match="recorded"):
            meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / key, support_chunk=5, **kw))
    # every chunk's graph is kept in plain second order; one chunk's at a time checkpointed, as without graph
    assert seen["second, checkpointed"] < seen["second"] and seen["second, checkpointed"] == seen["first"]
