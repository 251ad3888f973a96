import json

import pytest
import torch

from metahyper.config import MetaTrainConfig
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.models import group_of, layer_label
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.meta_train import meta_train
from tests.conftest import tiny_meta_config


def _cfg(root, init, out, **kw) -> MetaTrainConfig:
    """One iteration, no validation."""
    base = {"iterations": 1, "eval_inner_steps": 2, "val_every": 0, "val_episodes": 300}
    return tiny_meta_config(root, init, out, **{**base, **kw})


def _changed(before: dict, after: dict) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before if not k.startswith("fc.")}


def test_hyper_iteration_changes_only_outer_groups(glyph_root, pretrained, tmp_path):
    meta_train(_cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "meta"))
    before = load_checkpoint(pretrained["hyper-wrn-10-1"]).state_dict
    after = load_checkpoint(tmp_path / "meta" / "last.pt")
    assert after.model_config.num_classes == 3 and after.state_dict["fc.weight"].shape[0] == 3  # fresh 3-way head
    changed = _changed(before, after.state_dict)
    params = [k for k in changed if "running_" not in k and "num_batches" not in k]
    for k in params:  # Algorithm 2: embeddings adapt only in the inner loop; hypernetworks + backbone learn outside
        assert changed[k] == (group_of(k) != "embeddings"), k
    assert not any(changed[k] for k in changed if "running_" in k or "num_batches" in k)  # transductive BN
    # the inner loop changes only the inner groups: generated layers move, plain stage convs do not
    rows = read_csv(tmp_path / "meta" / "movement.csv")
    assert len(rows) == 1
    for layer, value in rows[0].items():
        if layer == "iteration":
            continue
        generated = f"{layer}.embedding" in before
        assert (float(value) > 0) == generated, layer
    assert float(rows[0]["stages.1.0.conv2"]) > 0 and float(rows[0]["stages.1.0.conv1"]) == 0


def test_outer_groups_option(glyph_root, pretrained, tmp_path):
    meta_train(_cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "meta", outer=["hypernetworks", "classifier"]))
    before = load_checkpoint(pretrained["hyper-wrn-10-1"]).state_dict
    changed = _changed(before, load_checkpoint(tmp_path / "meta" / "last.pt").state_dict)
    assert any(changed[k] for k in changed if k.startswith("hypernets."))
    assert not any(changed[k] for k in changed if group_of(k) in ("backbone", "embeddings"))


def test_plain_iteration_adapts_and_learns_everything(glyph_root, pretrained, tmp_path):
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "meta", first_order=True))
    before = load_checkpoint(pretrained["wrn-10-1"]).state_dict
    changed = _changed(before, load_checkpoint(tmp_path / "meta" / "last.pt").state_dict)
    assert all(v for k, v in changed.items() if "running_" not in k and "num_batches" not in k)  # Algorithm 1
    row = read_csv(tmp_path / "meta" / "movement.csv")[0]
    assert all(float(v) > 0 for k, v in row.items() if k != "iteration")  # raw weights move
    assert layer_label("stages.1.0.conv2") == "stage 2 block 1 conv 2"


def test_meta_train_validates_and_keeps_best(glyph_root, pretrained, tmp_path):
    summary = meta_train(
        _cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "meta", iterations=3, val_every=2, val_episodes=3)
    )
    val = read_csv(tmp_path / "meta" / "val.csv")
    assert [int(r["iteration"]) for r in val] == [2, 3]  # every 2 iterations and at the end
    best = load_checkpoint(tmp_path / "meta")
    assert best.path.name == "best.pt" and best.extra["val_acc"] == pytest.approx(summary["best_val_acc"])
    assert best.extra["maml"]["inner"] == ["embeddings", "classifier"]
    curves = json.loads((tmp_path / "meta" / "curves.json").read_text())
    assert curves["model"] == "Hyper-WRN-10-1 (1)" and len(curves["validation"]) == 2
    with pytest.raises(UserError, match="meta-trained run"):
        meta_train(_cfg(glyph_root, tmp_path / "meta", tmp_path / "again"))


def test_meta_train_resume_after_sigkill_matches_uninterrupted_run(glyph_root, pretrained, tmp_path, cli, killed):
    args = [
        "meta-train",
        "--train",
        "glyphs-a",
        "--test",
        "glyphs-b",
        "--init",
        str(pretrained["hyper-wrn-10-1"]),
        "--ways",
        "3",
        "--queries",
        "2",
        "--meta-batch",
        "2",
        "--iterations",
        "5",
        "--inner-steps",
        "1",
        "--inner-steps-eval",
        "1",
        "--val-every",
        "2",
        "--val-episodes",
        "2",
        "--save-every",
        "2",
        "--seed",
        "5",
        "--data-root",
        str(glyph_root),
        "--device",
        "cpu",
        "--quiet",
    ]
    cli(*args, "--out", str(tmp_path / "full"))
    proc = killed(tmp_path / "full", tmp_path / "killed", 3)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL before iteration 4, after last.pt of iteration 2
    assert load_checkpoint(tmp_path / "killed" / "last.pt").extra["iteration"] == 2
    cli(*args, "--out", str(tmp_path / "killed"), "--resume")
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt")
    assert resumed.extra["iteration"] == 5
    for k, v in full.state_dict.items():
        assert torch.equal(v, resumed.state_dict[k]), k
    for name in ("train.csv", "movement.csv", "val.csv"):
        assert (tmp_path / "full" / name).read_text() == (tmp_path / "killed" / name).read_text(), name
    assert (tmp_path / "full" / "log.jsonl").read_text() == (tmp_path / "killed" / "log.jsonl").read_text()


def test_higher_backend_runs_the_same_inner_loop(glyph_root, pretrained, tmp_path):
    for backend in ("func", "higher"):
        meta_train(_cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / backend, backend=backend))
    rows = {b: read_csv(tmp_path / b / "movement.csv")[0] for b in ("func", "higher")}
    for layer, value in rows["func"].items():
        assert float(rows["higher"][layer]) == pytest.approx(float(value), rel=1e-3, abs=1e-7), layer
    losses = {b: float(read_csv(tmp_path / b / "train.csv")[0]["loss"]) for b in ("func", "higher")}
    assert losses["higher"] == pytest.approx(losses["func"], rel=1e-4)


def test_bf16_autocast_option(glyph_root, pretrained, tmp_path):
    """``--autocast bf16`` meta-trains with bfloat16 forwards: finite losses close to float32's
    (bf16 rounding), float32 parameters; an unknown value is a user error."""
    init = pretrained["hyper-wrn-10-1"]
    meta_train(_cfg(glyph_root, init, tmp_path / "fp32"))
    meta_train(_cfg(glyph_root, init, tmp_path / "bf16", autocast="bf16"))
    loss = {k: float(read_csv(tmp_path / k / "train.csv")[0]["loss"]) for k in ("fp32", "bf16")}
    assert loss["bf16"] != loss["fp32"] and loss["bf16"] == pytest.approx(loss["fp32"], rel=0.05)
    state = load_checkpoint(tmp_path / "bf16" / "last.pt").state_dict
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    with pytest.raises(UserError, match="--autocast must be one of bf16"):
        meta_train(_cfg(glyph_root, init, tmp_path / "bad", autocast="fp8"))


def test_inner_checkpoint_option(glyph_root, pretrained, tmp_path):
    """``--inner-checkpoint 1`` meta-trains to the same parameters (same meta-gradient, float32
    rounding); negative values are a user error; with --first-order it warns once and changes nothing."""
    init = pretrained["hyper-wrn-10-1"]
    for k in (0, 1):
        meta_train(_cfg(glyph_root, init, tmp_path / f"ck{k}", inner_steps=2, inner_checkpoint=k))
    runs = {k: load_checkpoint(tmp_path / f"ck{k}" / "last.pt") for k in (0, 1)}
    assert runs[1].extra["maml"]["inner_checkpoint"] == 1
    for name, v in runs[0].state_dict.items():
        torch.testing.assert_close(runs[1].state_dict[name], v, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(UserError, match="--inner-checkpoint must be >= 0"):
        meta_train(_cfg(glyph_root, init, tmp_path / "bad", inner_checkpoint=-1))
    with pytest.warns(UserWarning, match="changes nothing with --first-order") as caught:
        meta_train(_cfg(glyph_root, init, tmp_path / "fo", first_order=True, inner_checkpoint=2))
    assert sum("--inner-checkpoint" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("rule", ["meta-sgd", "lslr"])
def test_learned_inner_rates_are_trained_saved_evaluated_and_resumed(glyph_root, pretrained, tmp_path, rule):
    """--inner-rule with learned rates: the rates move in meta-training, every checkpoint carries
    them, eval adapts with them (no extra flag), and an interrupted run resumes to the same rates."""
    from metahyper.config import EvalConfig
    from metahyper.meta.rules import rate_key
    from metahyper.train.evaluate import evaluate

    init = pretrained["hyper-wrn-10-1"]
    kw = dict(inner_rule=rule, iterations=3, save_every=2, val_every=3, val_episodes=2, inner_lr=0.05)
    meta_train(_cfg(glyph_root, init, tmp_path / "full", **kw))

    def stop(it):
        if it == 2:
            raise KeyboardInterrupt  # after last.pt of iteration 2

    with pytest.raises(KeyboardInterrupt):
        meta_train(_cfg(glyph_root, init, tmp_path / "cut", **kw), on_step=stop)
    meta_train(_cfg(glyph_root, init, tmp_path / "cut", resume=True, **kw))
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    rates = full.extra["inner_rule"]
    assert rates and rates.keys() == cut.extra["inner_rule"].keys()
    assert all(torch.equal(rates[k], cut.extra["inner_rule"][k]) for k in rates)  # resumed bit-identically
    assert any(not torch.all(r == 0.05) for r in rates.values())  # learned: moved from their start
    best = load_checkpoint(tmp_path / "full" / "best.pt")
    assert best.extra["maml"]["inner_rule"] == rule and best.extra["inner_rule"].keys() == rates.keys()
    assert f"lrs.{rate_key('fc.weight')}" in rates
    result = evaluate(
        EvalConfig(checkpoint=str(tmp_path / "full"), dataset="glyphs-b", shots=1, ways=3, queries=2, episodes=2,
                   data_root=str(glyph_root), device="cpu", progress=False, output=str(tmp_path / "e.json"))
    )  # fmt: skip
    assert result.settings["inner_rule"] == rule


def test_derivative_order_annealing_and_cosine_schedule(glyph_root, pretrained, tmp_path, monkeypatch):
    """--first-order-iterations N: first order for the first N iterations, then second order;
    --lr-schedule cosine: the logged lr follows the cosine from --outer-lr to --min-lr."""
    import math

    from metahyper.meta import MAML

    orders, step = [], MAML.meta_step

    def spy(self, tasks, **kw):
        orders.append(kw["first_order"])
        return step(self, tasks, **kw)

    monkeypatch.setattr(MAML, "meta_step", spy)
    kw = dict(iterations=4, first_order_iterations=2, lr_schedule="cosine", outer_lr=1e-3, min_lr=1e-4)
    meta_train(_cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "meta", **kw))
    assert orders == [True, True, False, False]
    lrs = [float(r["lr"]) for r in read_csv(tmp_path / "meta" / "train.csv")]
    assert lrs == pytest.approx([1e-4 + 9e-4 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(4)], rel=1e-6)
    with pytest.raises(UserError, match="--first-order-iterations switches from first to second order"):
        _cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "x", first_order=True, first_order_iterations=2)


PRESETS = {  # --algorithm (and --head): what the checkpoint records of the meta-learner
    "maml": {"first_order": False, "inner_rule": "sgd"},
    "fomaml": {"first_order": True},
    "anil": {"inner": ["classifier"]},
    "boil": {"inner": ["embeddings"]},  # the body of a hyper model
    "meta-sgd": {"inner_rule": "meta-sgd"},
    "maml++": {"inner_rule": "lslr"},  # and per-step BatchNorm: in the model's config
}


@pytest.mark.parametrize("head", ["learned", "zero"])
@pytest.mark.parametrize("algorithm", sorted(PRESETS))
def test_each_algorithm_meta_trains_evaluates_and_resumes_bit_identically(
    glyph_root, pretrained, tmp_path, algorithm, head
):
    from metahyper.config import EvalConfig
    from metahyper.train.evaluate import evaluate

    if head == "zero" and algorithm == "boil":  # BOIL keeps the head out of the inner loop
        with pytest.raises(UserError, match="--head zero restarts the classifier"):
            meta_train(_cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "x", algorithm="boil", head="zero"))
        return
    kw = dict(algorithm=algorithm, head=head, iterations=3, save_every=2, val_every=3, val_episodes=2)
    init = pretrained["hyper-wrn-10-1"]
    meta_train(_cfg(glyph_root, init, tmp_path / "full", **kw))

    def stop(it):
        if it == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train(_cfg(glyph_root, init, tmp_path / "cut", **kw), on_step=stop)
    meta_train(_cfg(glyph_root, init, tmp_path / "cut", resume=True, **kw))
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(v, cut.state_dict[k]) for k, v in full.state_dict.items())
    assert all(torch.equal(v, cut.extra["inner_rule"][k]) for k, v in full.extra["inner_rule"].items())
    stored = full.extra["maml"]
    assert stored["algorithm"] == algorithm and stored["head"] == head
    assert {k: stored[k] for k in PRESETS[algorithm]} == PRESETS[algorithm]
    result = evaluate(
        EvalConfig(checkpoint=str(tmp_path / "full"), dataset="glyphs-b", shots=1, ways=3, queries=2, episodes=2,
                   data_root=str(glyph_root), device="cpu", progress=False, output=str(tmp_path / "e.json"))
    )  # fmt: skip
    assert result.settings["head"] == head and result.settings["inner"] == list(stored["inner"])
    steps = _cfg(glyph_root, init, tmp_path / "x", **kw).inner_steps
    assert full.model_config.bn_steps == (steps + 1 if algorithm == "maml++" else 0)


def test_maml_plus_plus_preset_expands_to_its_pieces(glyph_root, pretrained, tmp_path):
    """--algorithm maml++ sets LSLR, the multi-step loss over 15 epochs, per-step BatchNorm, first
    order for 50 epochs, the cosine schedule down to 1e-5; options given other values win; config.json
    records the expanded options."""
    init = pretrained["hyper-wrn-10-1"]
    cfg = _cfg(glyph_root, init, tmp_path / "a", algorithm="maml++", iterations_per_epoch=7)
    got = {k: getattr(cfg, k) for k in ("inner_rule", "msl_epochs", "per_step_bn", "first_order_iterations",
                                        "lr_schedule", "min_lr")}  # fmt: skip
    assert got == {"inner_rule": "lslr", "msl_epochs": 15, "per_step_bn": True, "first_order_iterations": 350,
                   "lr_schedule": "cosine", "min_lr": 1e-5}  # fmt: skip
    assert _cfg(glyph_root, init, tmp_path / "b", algorithm="maml++", first_order=True).first_order_iterations == 0
    assert _cfg(glyph_root, init, tmp_path / "c", algorithm="maml++", msl_epochs=3).msl_epochs == 3
    meta_train(cfg)
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["algorithm"] == "maml++" and saved["per_step_bn"] and saved["first_order_iterations"] == 350


def test_per_step_batchnorm_records_each_steps_statistics(glyph_root, pretrained, tmp_path):
    """--per-step-bn: every BatchNorm gets --inner-steps + 1 slots starting from the pretrained one;
    meta-training moves their statistics apart; eval (also --bn frozen) runs on them unchanged."""
    from metahyper.config import EvalConfig
    from metahyper.train.evaluate import evaluate

    init = pretrained["hyper-wrn-10-1"]
    meta_train(_cfg(glyph_root, init, tmp_path / "m", per_step_bn=True, inner_steps=2, iterations=2))
    run = load_checkpoint(tmp_path / "m" / "last.pt")
    pretrained_mean = load_checkpoint(init).state_dict["stages.0.0.bn1.running_mean"]
    means = run.state_dict["stages.0.0.bn1.running_mean"]
    assert means.shape == (3, *pretrained_mean.shape) and run.model_config.bn_steps == 3
    assert all(not torch.equal(means[k], pretrained_mean) for k in range(3))
    assert not torch.equal(means[0], means[2])  # support (slot 0) and query (slot 2) statistics differ
    for bn in ("transductive", "frozen"):
        result = evaluate(
            EvalConfig(checkpoint=str(tmp_path / "m"), dataset="glyphs-b", shots=1, ways=3, queries=2, episodes=2,
                       bn=bn, data_root=str(glyph_root), device="cpu", progress=False,
                       output=str(tmp_path / f"e-{bn}.json"))
        )  # fmt: skip
        assert 0 <= result.mean <= 1
    assert torch.equal(load_checkpoint(tmp_path / "m" / "last.pt").state_dict["stages.0.0.bn1.running_mean"], means)


def test_multi_step_loss_weights_follow_the_epochs(glyph_root, pretrained, tmp_path, monkeypatch):
    """--msl-epochs E with --iterations-per-epoch I: epoch = iteration // I; the multi-step loss's
    weights of that epoch, then the final loss only; refused with --inner-checkpoint."""
    from metahyper.meta import MAML

    seen, step = [], MAML.meta_step

    def spy(self, tasks, **kw):
        seen.append(kw["step_weights"])
        return step(self, tasks, **kw)

    monkeypatch.setattr(MAML, "meta_step", spy)
    kw = dict(iterations=4, inner_steps=2, msl_epochs=1, iterations_per_epoch=2)
    meta_train(_cfg(glyph_root, pretrained["hyper-wrn-10-1"], tmp_path / "meta", **kw))
    assert seen == [[0.5, 0.5], [0.5, 0.5], None, None]
    with pytest.raises(UserError, match="--msl-epochs keeps the graph of every inner step"):
        _cfg(glyph_root, pretrained["wrn-10-1"], tmp_path / "x", msl_epochs=2, inner_checkpoint=1)
