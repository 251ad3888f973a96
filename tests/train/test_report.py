"""metahyper report: eval JSONs of two models x two training seeds into the table layout."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from metahyper.config import EvalConfig, PretrainConfig
from metahyper.errors import UserError
from metahyper.io import read_csv
from metahyper.report import budget_to_match, build_report, collect
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


def test_best_and_last_checkpoints_of_one_model_get_a_row_each(evals):
    """Table 8 scores best.pt (--select-on target) and last.pt of the same runs: two rows, never one
    cell mixing both; one rule alone keeps the plain model label."""
    maml = [{**r, "method": "maml"} for r in collect(evals)]
    target = [{**r, "path": r["path"] + ".best", "selection": {"rule": "target", "dataset": "glyphs-b"}} for r in maml]
    last = [{**r, "path": r["path"] + ".last", "selection": {"rule": "final", "checkpoint": "last.pt"}} for r in maml]
    report = build_report(target + last)
    base = {r["model"] for r in maml}
    assert set(report.rows) == {f"{m}, selected on glyphs-b val" for m in base} | {f"{m}, last iterate" for m in base}
    assert all(cell.n == 2 for cell in report.cells.values())  # the two seeds, one rule per cell
    assert set(build_report(target).rows) == base


def _pretrain_run(path: Path, model: str, accs: list[float], epochs: int) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"stage": "pretrain", "model": model, "variant": 2, "epochs": epochs}))
    rows = [{"epoch": i + 1, "train_loss": 1.0, "val_acc": a} for i, a in enumerate(accs)]
    (path / "history.json").write_text(json.dumps(rows))
    return path


def test_budget_is_the_first_epoch_the_hyper_run_reaches_the_plain_final_accuracy(tmp_path, cli):
    plain = _pretrain_run(tmp_path / "plain", "resnet-34", [0.3, 0.5, 0.6, 0.7, 0.71, 0.72, 0.73, 0.7358], 8)
    hyper = _pretrain_run(tmp_path / "hyper", "hyper-resnet-34", [0.4, 0.6, 0.7, 0.73, 0.7358, 0.74, 0.74, 0.7387], 10)
    match = budget_to_match(plain, hyper)
    assert (match["epoch"], match["epochs"], match["fraction"]) == (5, 10, 0.5)
    assert match["plain_final_acc"] == 0.7358 and not match["finished"]  # the hyper run has 8 of 10 epochs
    proc = cli("report", "--budget", str(plain), str(hyper))
    assert (
        "HyperResNet-34 (2) vs ResNet-34 (final 73.58 %): reached at epoch 5 of 10 (50 % of the budget)" in proc.stdout
    )
    slow = _pretrain_run(tmp_path / "slow", "hyper-resnet-34", [0.1, 0.2], 2)
    assert (
        budget_to_match(plain, slow)["epoch"] is None
        and "not reached in 2 epochs" in cli("report", "--budget", str(plain), str(slow)).stdout
    )
    (tmp_path / "bare").mkdir()
    proc = cli("report", "--budget", str(plain), str(tmp_path / "bare"), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a pretrain run" in proc.stderr
    proc = cli("report", check=False)
    assert proc.returncode == 2 and "nothing to report" in proc.stderr
