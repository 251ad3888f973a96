"""Options generated from the config dataclasses: one option per field with the field's default,
``--config`` under command-line overrides, and the same one-line errors from the CLI and Python."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict

import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import DemoConfig, EvalConfig, MetaTrainConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.meta import BACKENDS, BN_MODES
from metahyper.models import GROUP_NAMES
from metahyper.options import specs

COMMANDS = {"pretrain": PretrainConfig, "meta-train": MetaTrainConfig, "eval": EvalConfig, "demo": DemoConfig}
# the smallest command lines, and the same required fields in Python
REQUIRED = {
    "pretrain": (
        ["--dataset", "glyphs-a", "--model", "wrn-10-1", "--out", "r"],
        {"dataset": "glyphs-a", "model": "wrn-10-1", "out": "r"},
    ),
    "meta-train": (
        ["--train", "glyphs-a", "--test", "glyphs-b", "--init", "p", "--out", "r"],
        {"train": "glyphs-a", "test": "glyphs-b", "init": "p", "out": "r"},
    ),
    "eval": (
        ["--checkpoint", "c", "--dataset", "glyphs-b", "--shots", "1"],
        {"checkpoint": "c", "dataset": "glyphs-b", "shots": 1},
    ),
    "demo": ([], {}),
}
NOT_FIELDS = {"config_file", "help", "force"}  # --config, --help, demo's --force


@pytest.fixture
def built(monkeypatch):
    """Run a command with its training function replaced: returns the config it was given."""
    import metahyper.demo
    import metahyper.train.evaluate
    import metahyper.train.meta_train
    import metahyper.train.pretrain

    seen = []

    class Result:
        settings = {"output": "x.json"}

        def line(self):
            return "result"

    summary = {"model": "m", "best_val_acc": None}
    monkeypatch.setattr(metahyper.train.pretrain, "pretrain", lambda cfg, ctx: seen.append(cfg) or summary)
    monkeypatch.setattr(metahyper.train.meta_train, "meta_train", lambda cfg, ctx: seen.append(cfg) or summary)
    monkeypatch.setattr(metahyper.train.evaluate, "evaluate", lambda cfg, ctx: seen.append(cfg) or Result())
    monkeypatch.setattr(metahyper.demo, "run_demo", lambda cfg, force, echo: seen.append(cfg))

    def run(*args: str):
        result = CliRunner().invoke(main, [*args, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return seen.pop()

    return run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_is_one_option_with_the_fields_default(command, built):
    cls = COMMANDS[command]
    params = {p.name: p for p in main.commands[command].params}
    assert set(params) - NOT_FIELDS == {s.name for s in specs(cls) if s.opt.cli}
    assert ("config_file" in params) == (command != "demo")
    for spec in specs(cls):
        if not spec.opt.cli:  # settable from Python only (the demo's fixed protocol)
            assert cls is DemoConfig and spec.name not in params
            continue
        param = params[spec.name]
        assert sum(spec.flag in p.opts + p.secondary_opts for p in params.values()) == 1
        if spec.required:
            assert param.default is None and "[required]" in param.help
        elif spec.opt.invert:
            assert param.is_flag and param.default is False and spec.default is True
        elif spec.is_list and spec.default is not None:
            assert param.default == ",".join(map(str, spec.default))
        else:
            assert param.default == (None if spec.default is MISSING else spec.default)
    # given only the required options, the command builds exactly the Python defaults
    args, kw = REQUIRED[command]
    assert built(command, *args) == cls(**kw, device="cpu")


def test_option_names_and_choices_come_from_their_owners():
    opts = {s.name: s for s in specs(MetaTrainConfig)}
    assert opts["backend"].opt.choices == tuple(BACKENDS) and opts["bn"].opt.choices == BN_MODES
    assert opts["inner"].opt.choices == opts["outer"].opt.choices == GROUP_NAMES  # the groups and "body"
    assert (opts["num_workers"].flag, opts["progress"].flag) == ("--workers", "--quiet")
    assert {s.name: s.opt.choices for s in specs(EvalConfig)}["bn"] == BN_MODES


def test_command_line_values_become_config_fields(built):
    args, _ = REQUIRED["meta-train"]
    cfg = built("meta-train", *args, "--inner", "embeddings, classifier", "--workers", "2", "--quiet", "--first-order")
    assert cfg.inner == ["embeddings", "classifier"] and cfg.outer is None
    assert cfg.num_workers == 2 and cfg.progress is False and cfg.first_order is True
    pre = built("pretrain", *REQUIRED["pretrain"][0], "--milestones", "3,5", "--no-augment")
    assert pre.milestones == [3, 5] and pre.augment is False and pre.eval_split is None
    cifar = built("pretrain", "--dataset", "cifar100", "--model", "wrn-10-1", "--out", "r")
    assert cifar.eval_split == "test"  # CIFAR validates on its test split unless told otherwise
    demo = built("demo", "--second-order", "--pretrain-epochs", "2")
    assert (
        demo.first_order is False
        and demo.pretrain_epochs == 2
        and demo == DemoConfig(first_order=False, pretrain_epochs=2, device="cpu")
    )


def test_config_file_is_overridden_by_the_command_line(built, tmp_path):
    stored = PretrainConfig(
        dataset="fc100",
        out="old",
        model="hyper-wrn-10-1",
        epochs=7,
        lr=0.5,
        milestones=[2, 4],
        progress=False,
        resume=True,
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"stage": "pretrain", **asdict(stored)}))
    for source in (run, run / "config.json"):
        cfg = built("pretrain", "--config", str(source), "--lr", "0.2", "--out", "new")
        assert (cfg.epochs, cfg.lr, cfg.out, cfg.model, cfg.milestones) == (7, 0.2, "new", "hyper-wrn-10-1", [2, 4])
        assert cfg.progress is False and cfg.resume is False  # --resume is never taken from the file
    # a flag given explicitly wins even when it equals the default
    assert built("pretrain", "--config", str(run), "--epochs", "200").epochs == 200


def test_eval_config_from_an_eval_result(built, tmp_path):
    """An eval result JSON stores its config under "config": ``eval --config RESULT`` repeats it."""
    from metahyper.train.run import config_dict

    stored = EvalConfig(checkpoint="runs/meta", dataset="glyphs-b", shots=5, episodes=50, seed=3)
    result = tmp_path / "eval.json"
    result.write_text(json.dumps({"mean": 0.5, "accuracies": [0.5], "config": config_dict(stored)}))
    cfg = built("eval", "--config", str(result), "--seed", "4")
    assert (cfg.checkpoint, cfg.dataset, cfg.shots, cfg.episodes, cfg.seed) == ("runs/meta", ["glyphs-b"], [5], 50, 4)
    # a single evaluation stores its dataset and shots as scalars (as results always did)
    result.write_text(json.dumps({"config": {**config_dict(stored), "dataset": "glyphs-a", "shots": 1}}))
    cfg = built("eval", "--config", str(result))
    assert (cfg.dataset, cfg.shots, cfg.single) == (["glyphs-a"], [1], True)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file"),
        ("{not json", "is not valid JSON"),
        (json.dumps({"stage": "meta-train"}), "is a meta-train config, not pretrain"),
        (json.dumps([1, 2]), "not a run config"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(tmp_path, content, expected):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(main, ["pretrain", "--config", str(path)])
    assert result.exit_code == 2 and expected in result.output
    assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output


def test_missing_required_option_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["pretrain", "--model", "wrn-10-1", "--out", "r"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "missing option --dataset" in result.output and "--config" in result.output


@pytest.mark.parametrize(
    "command, args, field, value",
    [
        ("pretrain", ["--epochs", "0"], "epochs", 0),
        ("pretrain", ["--lr", "0"], "lr", 0.0),
        ("pretrain", ["--milestones", "120,60"], "milestones", [120, 60]),
        ("pretrain", ["--swa-start", "300"], "swa_start", 300),
        ("meta-train", ["--queries", "0"], "queries", 0),
        ("meta-train", ["--backend", "nope"], "backend", "nope"),
        ("meta-train", ["--inner", "embeddings,heads"], "inner", ["embeddings", "heads"]),
        ("meta-train", ["--autocast", "fp8"], "autocast", "fp8"),
        ("meta-train", ["--workers", "-1"], "num_workers", -1),
        ("meta-train", ["--meta-batch", "0"], "meta_batch", 0),
        ("eval", ["--method", "knn"], "method", "knn"),
        ("eval", ["--dataset", "imagenet"], "dataset", "imagenet"),
        ("demo", ["--threads", "0"], "threads", 0),
        ("pretrain", ["--val-fraction", "1"], "val_fraction", 1.0),
        ("pretrain", ["--momentum", "-1"], "momentum", -1.0),
        ("pretrain", ["--momentum", "1"], "momentum", 1.0),
        ("pretrain", ["--weight-decay", "-1"], "weight_decay", -1.0),
        ("pretrain", ["--lr", "nan"], "lr", float("nan")),
        ("pretrain", ["--gamma", "inf"], "gamma", float("inf")),
        ("pretrain", ["--seed", "-1"], "seed", -1),
        ("pretrain", ["--image-size", "0"], "image_size", 0),
        ("meta-train", ["--outer-lr", "inf"], "outer_lr", float("inf")),
        ("meta-train", ["--min-lr", "0"], "min_lr", 0.0),
        ("meta-train", ["--ways", "1"], "ways", 1),
        ("eval", ["--queries", "0"], "queries", 0),
        ("eval", ["--head-steps", "-5"], "head_steps", -5),
        ("eval", ["--head-lr", "nan"], "head_lr", float("nan")),
    ],
)
def test_bad_value_is_the_same_one_line_error_in_cli_and_python(command, args, field, value):
    cls = COMMANDS[command]
    base_args, kw = REQUIRED[command]
    with pytest.raises(UserError) as python:
        cls(**{**kw, field: value})
    message = str(python.value)
    assert "\n" not in message and message.startswith("--")
    result = CliRunner().invoke(main, [command, *base_args, *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"Error: {message}"
    # a config changed after it was built is checked again by validate() (the train functions call it)
    cfg = cls(**kw)
    setattr(cfg, field, value)
    with pytest.raises(UserError, match=re.escape(message)):
        cfg.validate()


def test_unparsable_list_is_one_line_exit_2():
    result = CliRunner().invoke(main, ["pretrain", *REQUIRED["pretrain"][0], "--milestones", "60,x"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert "--milestones expects comma-separated int values" in result.output


def test_python_configs_accept_paths_and_store_strings(tmp_path):
    cfg = PretrainConfig(dataset="glyphs-a", out=tmp_path / "run")
    assert cfg.out == str(tmp_path / "run")
    assert PretrainConfig.from_dict({"stage": "pretrain", **asdict(cfg)}) == cfg
    with pytest.raises(UserError, match="a meta-train config cannot configure pretrain"):
        PretrainConfig.from_dict({"stage": "meta-train", "dataset": "glyphs-a", "out": "r"})


@pytest.mark.parametrize("command", COMMANDS)
def test_every_float_option_refuses_nan_and_inf(command):
    cls = COMMANDS[command]
    kw = REQUIRED[command][1]
    floats = [s for s in specs(cls) if s.kind is float]
    assert floats
    for spec in floats:
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(UserError, match=f"{re.escape(spec.label)} must be a finite number"):
                cls(**{**kw, spec.name: [bad] if spec.is_list else bad})


def test_cross_field_checks():
    with pytest.raises(UserError, match="--min-lr 0.01 is above --outer-lr 0.001"):
        MetaTrainConfig(**REQUIRED["meta-train"][1], min_lr=0.01)
    with pytest.raises(UserError, match="--workers 100000 is more than the"):
        PretrainConfig(**REQUIRED["pretrain"][1], num_workers=100000)


def test_renamed_options_keep_their_former_spelling_hidden(built, tmp_path):
    """A renamed option's former flag still works (hidden from --help), and a stored config that
    uses the former key reads as the new one (``--config``, ``from_dict``)."""
    args, kw = REQUIRED["meta-train"]
    assert built("meta-train", *args, "--inner-steps-eval", "3").eval_inner_steps == 3
    assert built("meta-train", *args, "--eval-inner-steps", "4").eval_inner_steps == 4
    args, _ = REQUIRED["eval"]
    assert built("eval", *args, "--inner-steps", "2").eval_inner_steps == 2
    args, _ = REQUIRED["pretrain"]
    assert built("pretrain", *args, "--d", "8").d == built("pretrain", *args, "--embedding-depth", "8").d == 8
    shown = CliRunner().invoke(main, ["meta-train", "--help"]).output
    assert "--eval-inner-steps" in shown and "--inner-steps-eval" not in shown
    assert "--d " not in CliRunner().invoke(main, ["pretrain", "--help"]).output
    old = {**asdict(MetaTrainConfig(**kw)), "stage": "meta-train"}
    old["inner_steps_eval"] = old.pop("eval_inner_steps") + 5
    assert MetaTrainConfig.from_dict(old).eval_inner_steps == 15
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert built("meta-train", "--config", str(tmp_path), "--device", "cpu").eval_inner_steps == 15
