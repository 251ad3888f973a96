"""metahyper report: eval JSONs of two models x two training seeds into the table layout."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from metahyper.config import EvalConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.report import build_report, collect
from metahyper.train.evaluate import evaluate, mean_ci
from metahyper.train.pretrain import pretrain

MODELS = ("wrn-10-1", "hyper-wrn-10-1")


@pytest.fixture(scope="module")
def evals(glyph_root, pretrained, tmp_path_factory) -> list:
    """Eval JSONs of 2 models x 2 training seeds x 1 and 2 shots (glyphs-b, linear head, 3 episodes),
    under ``<tmp>/evals/<model>-seed<N>/``; seed 0 is the session's ``pretrained`` runs."""
    out = tmp_path_factory.mktemp("report")
    files = []
    for model in MODELS:
        for seed in (0, 1):
            run = pretrained[model] if seed == 0 else out / f"{model}-seed{seed}"
            if seed:
                pretrain(
                    PretrainConfig(
                        dataset="glyphs-a",
                        out=str(run),
                        model=model,
                        image_size=8,
                        epochs=1,
                        batch_size=64,
                        milestones=[],
                        seed=seed,
                        data_root=str(glyph_root),
                        device="cpu",
                        progress=False,
                    )
                )
            for shots in (1, 2):
                target = out / "evals" / f"{model}-seed{seed}" / f"eval-{shots}shot.json"
                res = evaluate(
                    EvalConfig(
                        checkpoint=str(run),
                        dataset="glyphs-b",
                        shots=shots,
                        ways=3,
                        queries=2,
                        episodes=3,
                        head_steps=5,
                        data_root=str(glyph_root),
                        device="cpu",
                        progress=False,
                        output=str(target),
                    )
                )
                files.append(res.settings["output"])
    return files


def _table_cells(stdout: str) -> dict[str, list[str]]:
    """Row label -> its cells, from the printed table (columns are separated by 2+ spaces)."""
    rows = {}
    for line in stdout.splitlines():
        parts = re.split(r"\s{2,}", line.strip())
        if parts[0].endswith("(linear head)"):
            rows[parts[0]] = parts[1:]
    return rows


def test_one_seed_reproduces_eval_json_digits(evals, cli):
    seed0 = [f for f in evals if json.loads(open(f).read())["settings"]["train_seed"] == 0]
    assert len(seed0) == 4
    proc = cli("report", *seed0)
    cells = _table_cells(proc.stdout)
    assert len(cells) == 2
    for f in seed0:
        d = json.loads(open(f).read())
        want = re.search(r"(\d+\.\d\d \+- \d+\.\d\d) %", _eval_line(d)).group(1)  # as `metahyper eval` prints it
        column = 0 if d["shots"] == 1 else 1
        assert cells[f"{d['model']}, pretrain only (linear head)"][column] == want


def _eval_line(d: dict) -> str:
    from metahyper.train.evaluate import EvalResult

    return EvalResult(**{k: d[k] for k in EvalResult.__dataclass_fields__}).line()


def test_two_seeds_aggregate_and_keep_every_run(evals, tmp_path, cli):
    eval_dirs = sorted({str(Path(f).parent) for f in evals})  # directories are searched for eval JSONs
    assert len(eval_dirs) == 4
    proc = cli(
        "report",
        *eval_dirs,
        "--title",
        "glyphs",
        "--markdown",
        str(tmp_path / "t.md"),
        "--csv",
        str(tmp_path / "t.csv"),
        "--json",
        str(tmp_path / "t.json"),
    )
    assert "(2 runs)" in proc.stdout and "glyphs-b 3-way 1-shot" in proc.stdout
    table = json.loads((tmp_path / "t.json").read_text())
    by_file = {f: json.loads(open(f).read()) for f in evals}
    assert len(table["cells"]) == 4 and len(table["rows"]) == 2
    for cell in table["cells"]:
        runs = [by_file[r["source"]] for r in cell["runs_detail"]]
        assert sorted(r["settings"]["train_seed"] for r in runs) == [0, 1]
        assert [r["mean"] for r in cell["runs_detail"]] == [r["mean"] for r in runs]  # exact floats
        assert [r["ci95"] for r in cell["runs_detail"]] == [r["ci95"] for r in runs]
        means = np.array([r["mean"] for r in runs])
        assert cell["mean"] == float(means.mean()) and cell["sd"] == float(means.std(ddof=1))
        assert (cell["pooled_mean"], cell["pooled_ci95"]) == mean_ci([a for r in runs for a in r["accuracies"]])
        assert cell["text"] == f"{100 * means.mean():.2f} +- {100 * means.std(ddof=1):.2f} sd (2 runs)"
    csv_runs = [r for r in read_csv(tmp_path / "t.csv") if r["kind"] == "run"]
    assert len(csv_runs) == 8 and all(float(r["mean"]) == by_file[r["source"]]["mean"] for r in csv_runs)
    assert "| model |" in (tmp_path / "t.md").read_text() and "±" in (tmp_path / "t.md").read_text()


def test_report_bad_input(tmp_path, cli):
    (tmp_path / "x.json").write_text('{"a": 1}')
    for arg in (str(tmp_path / "missing"), str(tmp_path / "x.json")):
        proc = cli("report", arg, check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error:")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no eval JSONs"):
        collect([tmp_path / "empty"])


def test_one_model_at_two_input_sizes_gets_two_rows(evals, tmp_path):
    results = collect(evals)
    resized = [{**r, "path": r["path"] + ".84", "settings": {**r["settings"], "image_size": 84}} for r in results]
    report = build_report(results + resized)
    assert len(report.rows) == 4 and any(row.startswith("WRN-10-1 (84 px)") for row in report.rows)
    assert len(build_report(results).rows) == 2


def test_each_meta_learner_gets_its_own_row(evals):
    """Runs of other --algorithm presets or --head zero are rows of their own (MAML with the
    learned head keeps the model's label)."""
    maml = [{**r, "method": "maml", "path": r["path"] + ".maml"} for r in collect(evals)]
    variants = [{**r, "path": r["path"] + f".{a}.{h}", "settings": {**r["settings"], "algorithm": a, "head": h}}
                for r in maml for a, h in (("anil", "learned"), ("maml", "zero"))]  # fmt: skip
    rows = build_report(maml + variants).rows
    base = {r["model"] for r in maml}
    assert set(rows) == base | {f"{m}, anil" for m in base} | {f"{m}, zero head" for m in base}
