"""tools/reproduce/meta_dataset.sh: the caches it builds, Meta-Dataset's fo-Proto-MAML recipes, and
every command line it runs valid for `metahyper` (each stage replaced by a recorder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.conftest import flag_value, replay_commands, run_script, script_commands

RAW = {
    "md-ilsvrc": "ILSVRC2012/train",
    "md-omniglot": "omniglot",
    "md-aircraft": "fgvc-aircraft-2013b",
    "md-cub": "CUB_200_2011",
    "md-dtd": "dtd",
    "md-quickdraw": "quickdraw",
    "md-fungi": "fungi",
    "md-vgg-flower": "flowers102",
    "md-traffic-sign": "GTSRB",
    "md-mscoco": "mscoco",
}


def _prepare_folders(tmp_path: Path, raw: bool) -> dict[str, str]:
    if raw:
        for folder in RAW.values():
            (tmp_path / "raw" / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    return {"RAW": str(tmp_path / "raw"), "DATA": str(tmp_path / "data"), "SEEDS": "0"}


def _run(tmp_path: Path, raw: bool = True, **env: str):
    return run_script("meta_dataset.sh", tmp_path, **{**_prepare_folders(tmp_path, raw), **env})


def _commands(tmp_path: Path, **env: str) -> list[list[str]]:
    return script_commands("meta_dataset.sh", tmp_path, **{**_prepare_folders(tmp_path, True), **env})


_value = flag_value


def test_every_command_is_valid_and_carries_meta_datasets_recipes(tmp_path, monkeypatch):
    commands = _commands(tmp_path)
    kinds = [c[0] for c in commands]
    assert kinds == ["prepare"] * 10 + ["pretrain"] * 4 + (["meta-train", "eval"] * 4 + ["report"]) * 2
    seen = replay_commands(commands, monkeypatch, tmp_path)

    assert [(name, Path(kw["source"]).relative_to(tmp_path / "raw").as_posix()) for name, kw in seen["prepare"]] == [
        (name, folder) for name, folder in RAW.items()
    ]
    assert all(kw["image_size"] == 84 and kw["root"] == str(tmp_path / "data") for _, kw in seen["prepare"])

    pre = {(cfg.model, cfg.variant): cfg for cfg in seen["pretrain"]}
    assert set(pre) == {("resnet-18", 1), ("hyper-resnet-18", 2), ("wrn-16-2", 1), ("hyper-wrn-16-2", 1)}
    assert {cfg.model: cfg.model_stem for cfg in seen["pretrain"]}["hyper-resnet-18"] == "imagenet"
    assert {cfg.model: cfg.model_stem for cfg in seen["pretrain"]}["wrn-16-2"] in (None, "cifar")
    first = seen["pretrain"][0]
    assert (first.dataset, first.split, first.epochs, first.milestones, first.gamma, first.batch_size) == (
        "md-ilsvrc",
        "train",
        30,
        [10, 20],
        0.1,
        256,
    )

    for cfg in seen["meta-train"]:
        assert (cfg.episodes, cfg.head, cfg.first_order, cfg.meta_batch, cfg.iterations, cfg.algorithm) == (
            "variable",
            "proto",
            True,
            1,
            75000,
            "maml",
        )
    recipe = {
        cfg.train: (cfg.inner_steps, cfg.eval_inner_steps, cfg.inner_lr, cfg.outer_lr, cfg.lr_halve_every)
        for cfg in seen["meta-train"]
    }
    assert recipe == {
        "md-ilsvrc": (6, 6, 0.005435, 3.634e-4, 3991),
        "md-all": (1, 6, 0.01988, 2.981e-4, 1300),
    }
    assert all(
        (cfg.benchmark, cfg.episodes, cfg.seed, cfg.ways, cfg.shots, cfg.queries)
        == ("meta-dataset", 600, 0, None, None, None)
        for cfg in seen["eval"]
    )
    reports = [c for c in commands if c[0] == "report"]
    assert [Path(_value(c, "--markdown")).name for c in reports] == ["meta-dataset-ilsvrc.md", "meta-dataset-all.md"]
    evals = [_value(c, "-o") for c in commands if c[0] == "eval"]
    assert [p for c in reports for p in c if p.endswith(".json")] == evals


def test_built_sources_are_skipped_and_missing_releases_refused(tmp_path):
    listing = tmp_path / "fake-metahyper"
    listing.write_text(
        "#!/usr/bin/env bash\n"
        "if [[ $1 == datasets ]]; then\n"
        '  echo "md-dtd          train       33        120   84x84  ok"\n'
        '  echo "md-dtd          val          7        120   84x84  ok"\n'
        '  echo "md-dtd          test         7        120   84x84  ok"\n'
        '  echo "md-mscoco       val         40  198-262465   84x84  ok"\n'
        'else echo metahyper "$@"; fi\n'
    )
    listing.chmod(0o755)
    prepared = [c[1] for c in _commands(tmp_path, METAHYPER=str(listing)) if c[0] == "prepare"]
    assert "md-dtd" not in prepared and "md-mscoco" in prepared and len(prepared) == 9  # mscoco lacks its test split
    again = [c[1] for c in _commands(tmp_path, METAHYPER=str(listing), IMAGE_SIZE="126") if c[0] == "prepare"]
    assert "md-dtd" in again  # built at another size

    proc = _run(tmp_path / "bare", raw=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "GTSRB (md-traffic-sign)" in proc.stderr


@pytest.mark.parametrize("bad", [{"HEAD": "learned"}, {"ORDER": "third"}, {"TRAIN_SETS": "md-dtd"}])
def test_bad_knobs_are_refused_in_one_line(tmp_path, bad):
    proc = _run(tmp_path, **bad)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_knobs_reach_the_commands(tmp_path):
    commands = _commands(
        tmp_path,
        MODELS="hyper-wrn-16-4:2",
        TRAIN_SETS="md-all",
        ORDER="second",
        QUICKDRAW_MAX_PER_CLASS="1000",
        PRETRAINED="last",
        EVAL_SEED="3",
    )
    quickdraw = next(c for c in commands if c[:2] == ["prepare", "md-quickdraw"])
    assert _value(quickdraw, "--max-per-class") == "1000"
    assert not any("--max-per-class" in c for c in commands if c[:2] == ["prepare", "md-dtd"])
    meta = [c for c in commands if c[0] == "meta-train"]
    assert len(meta) == 1 and "--first-order" not in meta[0]
    assert _value(meta[0], "--init").endswith("pretrain/hyper-wrn-16-4-v2/seed0/last.pt")
    assert "/md-all/maml-proto-so/hyper-wrn-16-4-v2/seed0" in _value(meta[0], "--out")
    evaluation = next(c for c in commands if c[0] == "eval")
    assert _value(evaluation, "--seed") == "3" and _value(evaluation, "-o").endswith("seed3.json")
