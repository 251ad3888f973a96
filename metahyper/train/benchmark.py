"""``metahyper eval --benchmark meta-dataset``: one checkpoint on every test source of a benchmark
(Meta-Dataset's ten, or any comma list of datasets: :func:`~metahyper.config.benchmark_sources`).

Each source built under the data root (its ``--split`` cache exists) is scored on ``cfg.episodes``
episodes of :class:`~metahyper.data.variable_episodes.VariableEpisodeSampler` (Meta-Dataset's
variable ways and shots; ``cfg.ways`` / ``cfg.shots`` / ``cfg.queries``, when set, fix them as the
sampler allows), mean +- 95% CI per source (:func:`~metahyper.train.evaluate.mean_ci`)
and the average of the sources' means, Meta-Dataset's summary. A source not built is refused in one
line before any work, or with ``--skip-missing`` listed as missing and skipped.

Everything is checked before the first episode: the checkpoint, the head (a learned head has one
width and cannot start variable-way tasks: ``--head zero|proto``), the memory of the largest
possible episode (500 support images and 50 x 10 queries, or what the fixed shape allows), every
source's cache and episode shape, whether each is loaded into memory (``--in-memory``, one source at
a time; :func:`~metahyper.data.cache.keep_in_memory`), and every output file. The result is written as JSON, CSV and a
Markdown table in Meta-Dataset's layout (sources as rows); :func:`benchmark_markdown` puts several
results (checkpoints) side by side with their average rank (``metahyper report`` on their JSONs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metahyper.config import EvalConfig, benchmark_sources
from metahyper.data.variable_episodes import MAX_QUERY, MAX_SUPPORT, MAX_WAYS, VariableEpisodeSampler
from metahyper.errors import UserError
from metahyper.io import write_csv, write_json, write_text
from metahyper.meta import MamlSettings
from metahyper.train.checkpoint import load_checkpoint
from metahyper.train.distributed import DistContext, resolve_device
from metahyper.train.evaluate import (
    build_scorer,
    check_episode_memory,
    describe_selection,
    episode_accuracies,
    episodes_fingerprint,
    mean_ci,
    resolve_method,
    run_identity,
)
from metahyper.train.outputs import CSV_FIELDS, check_outputs, with_marker
from metahyper.train.run import config_dict


def episode_shape(cfg: EvalConfig) -> tuple[int | None, int | None, int | None]:
    """``(ways, shots, queries)`` of the benchmark's episodes: the fixed ones, None for variable."""
    return cfg.ways, cfg.shots, cfg.queries


def shape_label(cfg: EvalConfig) -> str:
    """``variable`` or the fixed counts, e.g. ``5w-1s``: names the default output."""
    ways, shots, queries = episode_shape(cfg)
    fixed = [f"{v}{c}" for v, c in ((ways, "w"), (shots and shots[0], "s"), (queries, "q")) if v is not None]
    return "-".join(fixed) or "variable"


def largest_episode(cfg: EvalConfig) -> tuple[int, int]:
    """``(support, query)`` images of the largest episode the sampler can draw: at most 500
    support images (or ways x shots when shots are fixed) and 50 x 10 queries."""
    ways, shots, queries = episode_shape(cfg)
    ways = ways or MAX_WAYS
    support = ways * shots[0] if shots else MAX_SUPPORT
    return support, ways * (queries if queries is not None else MAX_QUERY)


def find_sources(cfg: EvalConfig) -> tuple[list[str], list[str]]:
    """``(built, missing)`` test sources of ``cfg.benchmark`` under ``cfg.data_root`` (a source is
    built when its ``cfg.split`` data file exists); a one-line :class:`UserError` when some are
    missing without ``--skip-missing``, or none is built."""
    from metahyper.data import default_root
    from metahyper.data.registry import layout_for

    root = Path(cfg.data_root) if cfg.data_root else default_root()
    built, missing = [], []
    for name in benchmark_sources(cfg.benchmark):
        try:
            found = layout_for(name, root).data_file(root, cfg.split).is_file()
        except UserError:  # not registered in this install
            found = False
        (built if found else missing).append(name)
    where = f"under {root} ({cfg.split} split)"
    if not built:
        raise UserError(f"no {cfg.benchmark} source is built {where}; build them with `metahyper prepare`")
    if missing and not cfg.skip_missing:
        raise UserError(
            f"{cfg.benchmark}: {', '.join(missing)} not built {where}; build them with `metahyper prepare`, or pass "
            f"--skip-missing to evaluate on the {len(built)} built"
        )
    return built, missing


def _check_head(cfg: EvalConfig, extra: dict, method: str, fc_width: int) -> None:
    """A learned head has the checkpoint's width: refuse variable ways, or other fixed ways."""
    if method != "maml":
        return
    stored = MamlSettings.from_dict(extra["maml"], cfg.checkpoint).head if extra.get("stage") == "meta-train" else None
    head = cfg.head or stored or "learned"
    ways = episode_shape(cfg)[0]
    if head == "learned" and (ways is None or (stored and ways != fc_width)):
        what = "variable-way episodes" if ways is None else f"{ways}-way episodes"
        raise UserError(
            f"the learned head has {fc_width} outputs and cannot start {what}; evaluate with --head zero|proto, "
            "or --method linear"
        )


def default_table(checkpoint: Path, cfg: EvalConfig) -> Path:
    """``eval-<benchmark>-<split>-<shape>-seed<seed>.json`` beside the checkpoint."""
    folder = Path(cfg.checkpoint) if Path(cfg.checkpoint).is_dir() else checkpoint.parent
    name = cfg.benchmark.replace(",", "+")  # a comma list of datasets
    return folder / f"eval-{name}-{cfg.split}-{shape_label(cfg)}-seed{cfg.seed}.json"


def _prepare(cfg: EvalConfig, ctx: DistContext | None, write: bool) -> tuple:
    """Every check of :func:`evaluate_benchmark`, in order, before any episode is scored:
    ``(checkpoint, method, device, image size, {source: sampler}, {source: whether to load it into
    memory}, missing, table path)``."""
    from metahyper.data.cache import keep_in_memory, open_split

    cfg.validate()
    if cfg.benchmark is None:
        raise UserError("evaluate_benchmark() needs --benchmark; use evaluate() or evaluate_matrix()")
    built, missing = find_sources(cfg)
    device = ctx.device if ctx is not None else resolve_device(cfg.device)
    ckpt = load_checkpoint(cfg.checkpoint)
    method = resolve_method(cfg, ckpt.extra)
    run_identity(ckpt.path)
    _check_head(cfg, ckpt.extra, method, ckpt.model_config.num_classes)
    image_size = check_episode_memory(cfg, ckpt, *largest_episode(cfg), device)
    ways, shots, queries = episode_shape(cfg)
    samplers = {
        name: VariableEpisodeSampler(
            open_split(name, cfg.split, root=cfg.data_root), ways, shots and shots[0], queries, seed=cfg.seed,
            image_size=image_size,
        )
        for name in built
    }  # fmt: skip
    processes = ctx.world_size if ctx is not None else 1
    loaded = {name: keep_in_memory([s.data], cfg.in_memory, processes) for name, s in samplers.items()}
    table = Path(cfg.output) if cfg.output else default_table(ckpt.path, cfg)
    if write and (ctx is None or ctx.is_main):
        check_outputs([(table.with_suffix(ext), f"benchmark{ext}", "-o") for ext in (".json", ".csv", ".md")])
    return ckpt, method, device, image_size, samplers, loaded, missing, table


def evaluate_benchmark(cfg: EvalConfig, ctx: DistContext | None = None, write: bool = True) -> dict:
    """Score ``cfg.checkpoint`` on every built test source of ``cfg.benchmark`` (this module's
    docstring); returns the result (what the JSON holds) and writes its ``.json``, ``.csv`` and
    ``.md`` (``cfg.output`` or :func:`default_table`) on the main process."""
    ckpt, method, device, image_size, samplers, loaded, missing, table = _prepare(cfg, ctx, write)
    rows, settings = [], {}
    indices = list(range(cfg.episodes))
    for name in list(samplers):
        sampler = samplers.pop(name)  # one source in memory at a time: the previous one is freed
        if loaded[name]:
            sampler.data.load_into_memory()
        model = ckpt.build_model().to(device)  # afresh per source: every source scores the same model
        _, score, settings = build_scorer(model, ckpt.extra, cfg)
        accs = episode_accuracies(score, sampler, indices, device, ctx, cfg.progress, desc=f"eval {name}")
        mean, ci = mean_ci(accs)
        rows.append({"source": name, "mean": mean, "ci95": ci, "episodes": len(accs), "accuracies": accs,
                     "fingerprint": episodes_fingerprint(sampler, indices)})  # fmt: skip
        sampler.data.close()
    ways, shots, queries = episode_shape(cfg)
    result = {
        "benchmark": cfg.benchmark, "model": ckpt.model_config.label(), "checkpoint": str(ckpt.path),
        "method": method, "split": cfg.split, "seed": cfg.seed, "ways": ways, "shots": shots and shots[0],
        "queries": queries, "sources": [r["source"] for r in rows], "missing": missing,
        "average": float(np.mean([r["mean"] for r in rows])), "results": rows,
        "settings": {**settings, "image_size": image_size, "stage": ckpt.extra.get("stage"),
                     **run_identity(ckpt.path)},
        "selection": describe_selection(ckpt.path, ckpt.extra),
    }  # fmt: skip
    result["files"] = []
    if write and (ctx is None or ctx.is_main):
        files = [table.with_suffix(".json"), table.with_suffix(".csv"), table.with_suffix(".md")]
        result["files"] = [str(f) for f in files]
        write_json(files[0], {**result, "config": config_dict(cfg)})
        write_csv(files[1], benchmark_rows(result), CSV_FIELDS["benchmark.csv"])
        write_text(files[2], benchmark_markdown([result]))
    return result


def benchmark_rows(result: dict) -> list[dict]:
    """The CSV of one result: a row per source, then ``average`` (its mean only)."""
    rows = [{k: r[k] for k in ("source", "mean", "ci95", "episodes", "fingerprint")} for r in result["results"]]
    return [*rows, {"source": "average", "mean": result["average"], "ci95": "", "episodes": "", "fingerprint": ""}]


def average_ranks(results: Sequence[dict]) -> list[float | None]:
    """Each result's mean rank over the sources that all of them scored (1: the best mean; ties
    share the mean of their ranks); None for all when they share no source."""
    common = [s for s in results[0]["sources"] if all(s in r["sources"] for r in results)]
    if not common:
        return [None] * len(results)
    means = np.array([[{x["source"]: x["mean"] for x in r["results"]}[s] for r in results] for s in common])
    ranks = np.empty_like(means)
    for i, row in enumerate(means):
        for j, value in enumerate(row):
            ranks[i, j] = (row > value).sum() + ((row == value).sum() + 1) / 2
    return [float(v) for v in ranks.mean(axis=0)]


def result_label(result: dict) -> str:
    """``model [method, algorithm, head]`` of a result (the algorithm when not plain MAML)."""
    settings = result.get("settings") or {}
    parts = [result["method"]]
    if result["method"] == "maml":
        algorithm, head = settings.get("algorithm", "maml"), settings.get("head")
        parts += [algorithm] if algorithm != "maml" else []
        parts += [f"{head} head"] if head else []
    return f"{result['model']} [{', '.join(parts)}]"


def _labels(results: Sequence[dict]) -> list[str]:
    """Column names: :func:`result_label` (with the runs merged into it), and the checkpoint where
    two would read the same."""
    labels = [result_label(r) + (f" ({r['runs']} runs)" if r.get("runs", 1) > 1 else "") for r in results]
    return [f"{t} {r.get('checkpoint', '')}" if labels.count(t) > 1 else t for t, r in zip(labels, results)]


def _cell(row: dict) -> str:
    """``mean +- 95% CI`` of one run, ``mean +- sd sd`` of runs merged (``sd`` over their means)."""
    if "sd" in row:
        return f"{100 * row['mean']:.2f} +- {100 * row['sd']:.2f} sd"
    return f"{100 * row['mean']:.2f} +- {100 * row['ci95']:.2f}"


def benchmark_markdown(results: Sequence[dict], kind: str = "benchmark.md") -> str:
    """Meta-Dataset's table: a row per source, a column per result (checkpoint), ``mean +- 95% CI``
    in %, then the average over sources and, for several results, the average rank (over the
    sources that all of them scored). A source a result did not score shows ``-``; sources whose
    episodes differ between results (fingerprints) are named under the table. ``kind``: the
    marker line (:func:`~metahyper.train.outputs.with_marker`)."""
    labels = _labels(results)
    sources = list(dict.fromkeys(s for r in results for s in benchmark_sources(r["benchmark"])))
    cells = [{x["source"]: _cell(x) for x in r["results"]} for r in results]
    lines = ["| source | " + " | ".join(labels) + " |", "|" + "---|" * (len(results) + 1)]
    lines += [f"| {s} | " + " | ".join(c.get(s, "-") for c in cells) + " |" for s in sources]
    lines.append("| average | " + " | ".join(f"{100 * r['average']:.2f}" for r in results) + " |")
    if len(results) > 1:
        ranks = average_ranks(results)
        lines.append("| average rank | " + " | ".join("-" if v is None else f"{v:.2f}" for v in ranks) + " |")
    missing = [s for s in sources if any(s in r["missing"] for r in results)]
    notes = [f"Not built, skipped: {', '.join(missing)}."] if missing else []
    if any(r.get("runs", 1) > 1 for r in results):
        notes.append(
            "Accuracy (%): one run: mean +- 95% CI over its episodes; several runs (seeds): the mean of their means "
            "+- the standard deviation of their means; the average and its rank from those means."
        )
    prints = [{x["source"]: x["fingerprint"] for x in r["results"]} for r in results]
    differ = [s for s in sources if len({p[s] for p in prints if s in p}) > 1]
    if differ:
        notes.append(f"Episodes differ between the results on {', '.join(differ)} (other seed or episode shape).")
    return with_marker(kind, "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in notes))


def benchmark_text(result: dict) -> str:
    """What ``eval --benchmark`` prints: a line per source, the average and the skipped sources."""
    head = f"{result['model']} [{result['method']}] on {result['benchmark']} {result['split']}"
    head += ", accuracy % (mean +- 95% CI):"
    width = max(len(s) for s in result["sources"])
    body = [f"  {r['source']:<{width}}  {100 * r['mean']:6.2f} +- {100 * r['ci95']:.2f}" for r in result["results"]]
    tail = [f"  {'average':<{width}}  {100 * result['average']:6.2f}"]
    if result["missing"]:
        tail.append(f"skipped (not built): {', '.join(result['missing'])}")
    return "\n".join([head, *body, *tail])
