"""`eval --benchmark meta-dataset`: every built md-* test source, variable-way episodes, one table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from metahyper.cli import main
from metahyper.config import BENCHMARKS, EvalConfig
from metahyper.data import open_split
from metahyper.data.variable_episodes import VariableEpisodeSampler
from metahyper.data.writing import write_splits
from metahyper.errors import UserError
from metahyper.report import merge_runs
from metahyper.train.benchmark import (
    average_ranks,
    benchmark_markdown,
    default_table,
    evaluate_benchmark,
    largest_episode,
)
from metahyper.train.evaluate import episodes_fingerprint
from metahyper.train.memory import ENV
from metahyper.train.outputs import MARKDOWN_MARKERS

BUILT = {"md-aircraft": (5, 4), "md-dtd": (6, 6)}  # classes, images per class


@pytest.fixture(scope="module")
def md_root(tmp_path_factory):
    """Test splits of two tiny md-* caches (8x8 RGB), the other eight sources not built."""
    root = tmp_path_factory.mktemp("md")
    rng = np.random.default_rng(0)
    splits = {}
    for name, (classes, images) in BUILT.items():
        names = [f"{name}-c{c}" for c in range(classes)]
        splits[name, "test"] = ({n: rng.integers(0, 256, (images, 8, 8, 3), dtype=np.uint8) for n in names}, names)
    write_splits(root, splits)
    return root


def _eval(*args: str):
    return CliRunner().invoke(main, ["eval", "--checkpoint", *args, "--device", "cpu", "--quiet"])


def test_scores_every_built_source_and_writes_the_table(md_root, pretrained, tmp_path):
    out = tmp_path / "md.json"
    args = (str(pretrained["wrn-10-1"]), "--benchmark", "meta-dataset", "--skip-missing", "--method", "maml",
            "--head", "zero", "--episodes", "3", "--inner-steps", "1", "--data-root", str(md_root),
            "-o", str(out))  # fmt: skip
    result = _eval(*args)
    assert result.exit_code == 0, result.output
    assert "skipped (not built): md-ilsvrc, md-omniglot, md-cub" in result.output
    data = json.loads(out.read_text())
    assert data["sources"] == ["md-aircraft", "md-dtd"]
    assert data["missing"] == [s for s in BENCHMARKS["meta-dataset"] if s not in BUILT]
    assert (data["ways"], data["shots"], data["queries"]) == (None, None, None)
    assert data["average"] == pytest.approx(np.mean([r["mean"] for r in data["results"]]))
    for row in data["results"]:
        assert len(row["accuracies"]) == row["episodes"] == 3
        assert row["mean"] == pytest.approx(np.mean(row["accuracies"]))
        sampler = VariableEpisodeSampler(open_split(row["source"], "test", md_root), seed=0, image_size=8)
        assert row["fingerprint"] == episodes_fingerprint(sampler, range(3))
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["source"] for r in rows] == ["md-aircraft", "md-dtd", "average"]
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0] == MARKDOWN_MARKERS["benchmark.md"]
    assert [line.split(" | ")[0] for line in md[3:5]] == ["| md-ilsvrc", "| md-omniglot"]  # Meta-Dataset's order
    assert "| md-dtd | " in out.with_suffix(".md").read_text()
    again = _eval(*args)  # the same evaluation replaces its own table
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["results"] == data["results"]


def test_fixed_counts_give_the_fixed_episodes(md_root, pretrained, tmp_path):
    out = tmp_path / "fixed.json"
    result = _eval(str(pretrained["wrn-10-1"]), "--benchmark", "meta-dataset", "--skip-missing", "--ways", "5",
                   "--shots", "1", "--queries", "2", "--episodes", "2", "--head-steps", "2", "--data-root",
                   str(md_root), "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert (data["ways"], data["shots"], data["queries"], data["method"]) == (5, 1, 2, "linear")
    sampler = VariableEpisodeSampler(open_split("md-dtd", "test", md_root), 5, 1, 2, seed=0)
    assert data["results"][1]["fingerprint"] == episodes_fingerprint(sampler, range(2))
    assert all(len(sampler.plan(i).classes) == 5 for i in range(2))


def test_refusals_come_before_any_work(md_root, pretrained, tmp_path, monkeypatch):
    ckpt, out = str(pretrained["wrn-10-1"]), tmp_path / "x.json"
    base = (ckpt, "--benchmark", "meta-dataset", "--data-root", str(md_root), "-o", str(out))
    missing = _eval(*base, "--method", "maml", "--head", "zero")
    assert missing.exit_code == 2
    assert "md-ilsvrc, md-omniglot, md-cub, md-quickdraw" in missing.output and "--skip-missing" in missing.output
    learned = _eval(*base, "--skip-missing", "--method", "maml")
    assert learned.exit_code == 2 and "--head zero|proto" in learned.output
    assert "cannot start variable-way episodes" in learned.output
    both = _eval(*base, "--dataset", "md-dtd")
    assert both.exit_code == 2 and "drop --dataset" in both.output
    no_shots = _eval(ckpt, "--dataset", "md-dtd", "--data-root", str(md_root))  # fixed episodes need --shots
    assert no_shots.exit_code == 2 and "missing option --shots" in no_shots.output
    monkeypatch.setenv(ENV, "0.0001")
    memory = _eval(*base, "--skip-missing", "--method", "maml", "--head", "zero")
    assert memory.exit_code == 2 and "episodes of 1000 images" in memory.output
    out.write_text("my notes\n")
    monkeypatch.delenv(ENV)
    taken = _eval(*base, "--skip-missing", "--method", "maml", "--head", "zero")
    assert taken.exit_code == 2 and "refusing to replace" in taken.output
    assert out.read_text() == "my notes\n" and not out.with_suffix(".csv").exists()


def test_largest_episode_and_python_refusals(pretrained, tmp_path):
    cfg = EvalConfig(checkpoint=str(pretrained["wrn-10-1"]), benchmark="meta-dataset", data_root=str(tmp_path))
    assert largest_episode(cfg) == (500, 500)
    cfg.shots, cfg.queries = [2], 3
    assert largest_episode(cfg) == (100, 150)
    with pytest.raises(UserError, match="no meta-dataset source is built"):
        evaluate_benchmark(cfg)
    with pytest.raises(UserError, match="--skip-missing applies to --benchmark only"):
        EvalConfig(checkpoint="x", dataset=["glyphs-b"], skip_missing=True).validate()


def _result(means: dict[str, float], missing=()) -> dict:
    rows = [{"source": s, "mean": m, "ci95": 0.01, "fingerprint": s} for s, m in means.items()]
    return {"benchmark": "meta-dataset", "model": "m", "method": "maml", "sources": list(means),
            "results": rows, "average": float(np.mean(list(means.values()))), "missing": list(missing)}  # fmt: skip


def test_average_rank_over_the_shared_sources():
    a = _result({"md-dtd": 0.5, "md-cub": 0.7, "md-fungi": 0.1})
    b = _result({"md-dtd": 0.6, "md-cub": 0.7}, missing=["md-fungi"])
    c = _result({"md-dtd": 0.4, "md-cub": 0.2})
    assert average_ranks([a, b, c]) == [(2 + 1.5) / 2, (1 + 1.5) / 2, 3.0]
    table = benchmark_markdown([a, b, c])
    assert "| average rank | 1.75 | 1.25 | 3.00 |" in table
    assert "| md-fungi | 10.00 +- 1.00 | - | - |" in table and "Not built, skipped: md-fungi." in table
    assert "| source | m [maml] /a | m [maml] /b |" in benchmark_markdown(
        [{**a, "checkpoint": "/a"}, {**b, "checkpoint": "/b"}]
    )


def test_report_compares_checkpoints_with_their_average_rank(md_root, pretrained, tmp_path):
    outs = []
    for head in ("zero", "proto"):
        out = tmp_path / f"{head}.json"
        cfg = EvalConfig(checkpoint=str(pretrained["wrn-10-1"]), benchmark="meta-dataset", skip_missing=True,
                         method="maml", head=head, episodes=2, eval_inner_steps=1, data_root=str(md_root),
                         device="cpu", progress=False, output=str(out))  # fmt: skip
        outs.append(evaluate_benchmark(cfg))
    files = [str(tmp_path / "zero.json"), str(tmp_path / "proto.json")]
    table = tmp_path / "cmp.md"
    result = CliRunner().invoke(main, ["report", *files, "--markdown", str(table)])
    assert result.exit_code == 0, result.output
    ranks = average_ranks(outs)
    assert sum(ranks) == pytest.approx(3.0)  # two results over the same sources
    assert f"| average rank | {ranks[0]:.2f} | {ranks[1]:.2f} |" in table.read_text()
    assert "Episodes differ" not in table.read_text()  # same seed and shape: the same episodes
    assert "| source | WRN-10-1 [maml, zero head] | WRN-10-1 [maml, proto head] |" in table.read_text()
    (tmp_path / "notes.json").write_text("{}")
    mixed = CliRunner().invoke(main, ["report", files[0], str(tmp_path / "notes.json")])
    assert mixed.exit_code == 2 and "not an `eval --benchmark` JSON" in mixed.output


def test_a_comma_list_of_datasets_is_a_benchmark_of_its_own(md_root, pretrained, tmp_path):
    out = tmp_path / "two.json"
    result = _eval(str(pretrained["wrn-10-1"]), "--benchmark", "md-dtd,md-aircraft", "--method", "maml", "--head",
                   "zero", "--episodes", "2", "--inner-steps", "1", "--data-root", str(md_root),
                   "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["benchmark"] == "md-dtd,md-aircraft" and data["missing"] == []
    assert [r["source"] for r in data["results"]] == ["md-dtd", "md-aircraft"]  # the order given
    rows = [line.split(" | ")[0] for line in out.with_suffix(".md").read_text().splitlines()[3:5]]
    assert rows == ["| md-dtd", "| md-aircraft"]
    cfg = EvalConfig(checkpoint=str(tmp_path), benchmark="md-dtd,md-aircraft", data_root=str(md_root))
    assert default_table(tmp_path, cfg).name == "eval-md-dtd+md-aircraft-test-variable-seed0.json"
    for benchmark, message in (("md-dtd,md-dtd", "comma list of distinct datasets"), ("md-dtd,nope", "--benchmark: ")):
        refused = _eval(str(pretrained["wrn-10-1"]), "--benchmark", benchmark, "--data-root", str(md_root))
        assert refused.exit_code == 2 and message in refused.output, refused.output


def test_runs_of_one_learner_are_merged_into_mean_and_sd_over_seeds():
    def run(model, seed, means):
        r = _result(means)
        for row in r["results"]:
            row["fingerprint"] = f"{row['source']}-seed{seed}"
        return {**r, "model": model, "checkpoint": f"/{model}/seed{seed}", "settings": {"head": "proto"}}

    a = [run("A", s, {"md-dtd": 0.4 + 0.1 * s, "md-cub": 0.5}) for s in range(3)]
    b = [run("B", s, {"md-dtd": 0.3, "md-cub": 0.6 + 0.1 * s}) for s in range(2)]
    merged = merge_runs([a[0], b[0], a[1], b[1], a[2]])
    assert [(m["model"], m["runs"]) for m in merged] == [("A", 3), ("B", 2)]
    dtd = merged[0]["results"][0]
    assert dtd["mean"] == pytest.approx(0.5) and dtd["sd"] == pytest.approx(0.1)
    assert dtd["fingerprint"] == "md-dtd-seed0+md-dtd-seed1+md-dtd-seed2"
    assert merged[1]["average"] == pytest.approx((0.3 + 0.65) / 2)
    table = benchmark_markdown(merged)
    assert "| source | A [maml, proto head] (3 runs) | B [maml, proto head] (2 runs) |" in table
    assert "| md-dtd | 50.00 +- 10.00 sd | 30.00 +- 0.00 sd |" in table
    assert "standard deviation of their means" in table
    assert merge_runs([a[0]]) == [a[0]]  # one run: as it is


def test_sources_in_memory_or_in_place_score_the_same(md_root, pretrained, tmp_path):
    results = {}
    for mode in ("yes", "no"):
        out = tmp_path / f"{mode}.json"
        run = _eval(str(pretrained["wrn-10-1"]), "--benchmark", "md-aircraft,md-dtd", "--method", "maml", "--head",
                    "zero", "--episodes", "2", "--inner-steps", "1", "--data-root", str(md_root), "--in-memory", mode,
                    "-o", str(out))  # fmt: skip
        assert run.exit_code == 0, run.output
        results[mode] = json.loads(out.read_text())["results"]
    assert results["yes"] == results["no"]
