#!/usr/bin/env python
"""Time and peak memory of one meta-step of each member of the MAML family, as ratios to MAML.

Every variant (the ``meta-train --algorithm`` presets, ``maml++`` after its first-order iterations
and with its multi-step loss; then ``--head zero``, the ``lslr`` inner rule, MAML with the
multi-step loss and with per-step BatchNorm) runs on the same model and the same tasks in ONE process: the timed
meta-steps are interleaved (rep 1 of each, rep 2 of each, ...) so that load from other processes
hits them alike; ``ms`` is the median. ``peak_mb``: the peak memory of a meta-step of one task above
what was in use before (``bench_meta.peak_memory``: the C heap on a CPU, CUDA's allocator on a GPU).

Usage::

    python tools/bench_algorithms.py                     # hyper-wrn-10-1, 16 px, as algorithms_cpu.sh
    python tools/bench_algorithms.py --model wrn-10-1 --json out.json
    python tools/bench_algorithms.py --quick             # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch

from metahyper.config import ALGORITHMS
from metahyper.io import write_json
from metahyper.meta import MamlSettings
from metahyper.meta.msl import msl_weights
from metahyper.models import build_model, per_step_batchnorm, resolve_groups
from metahyper.train.meta_learner import build_maml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_meta import make_tasks, peak_memory  # noqa: E402

# name -> (MamlSettings fields, multi-step loss, per-step BatchNorm): the presets (maml++ after its
# first-order iterations, with its multi-step loss on), then the pieces that are flags
_SETTINGS = ("inner", "inner_rule", "first_order", "head")
VARIANTS = {
    **{
        name: ({k: v for k, v in preset.items() if k in _SETTINGS}, bool(preset.get("msl_epochs")),
               bool(preset.get("per_step_bn")))
        for name, preset in ALGORITHMS.items()
    },
    "zero head": ({"head": "zero"}, False, False),
    "lslr": ({"inner_rule": "lslr"}, False, False),
    "msl": ({}, True, False),
    "per-step bn": ({}, False, True),
}  # fmt: skip


def settings_of(model: torch.nn.Module, fields: dict, steps: int, lr: float) -> MamlSettings:
    groups = resolve_groups(model, fields.pop("inner", None))
    return MamlSettings(inner=groups.inner_groups, outer=groups.outer_groups, inner_steps=steps, inner_lr=lr, **fields)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, variant=1, num_classes=args.ways).train()
    tasks = make_tasks(args.meta_batch, args.ways, args.shots, args.queries, args.size, torch.device("cpu"),
                       torch.float32, torch.contiguous_format)  # fmt: skip
    weights = msl_weights(args.steps, 0, 1)
    mamls = {}
    for name, (fields, msl, per_step) in VARIANTS.items():
        net = per_step_batchnorm(copy.deepcopy(model), args.steps + 1) if per_step else model
        mamls[name] = (build_maml(net, settings_of(net, dict(fields), args.steps, args.lr)), weights if msl else None)
    times: dict[str, list[float]] = {name: [] for name in mamls}
    for rep in range(args.reps + 1):  # rep 0 warms up
        for name, (maml, w) in mamls.items():
            maml.zero_grad(set_to_none=True)
            t = time.perf_counter()
            maml.meta_step(tasks, step_weights=w)
            if rep:
                times[name].append(time.perf_counter() - t)
    rows = []
    for name, (maml, w) in mamls.items():
        maml.zero_grad(set_to_none=True)
        with peak_memory(torch.device("cpu")) as mem:
            maml.meta_step(tasks[:1], step_weights=w)
        rows.append({"variant": name, "ms": 1000 * statistics.median(times[name]), "peak_mb": _mb(mem["peak_bytes"])})
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["ms"] / base["ms"]
        row["memory_ratio"] = row["peak_mb"] / base["peak_mb"] if row["peak_mb"] and base["peak_mb"] else None
    return {"config": vars(args), "rows": rows}


def _mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def format_table(result: dict) -> str:
    c = result["config"]
    lines = [f"{c['model']} (1), {c['size']} px, {c['ways']}-way {c['shots']}-shot, {c['queries']} queries, "
             f"meta-batch {c['meta_batch']}, {c['steps']} inner steps, second order, {c['threads']} thread(s), "
             f"median of {c['reps']}",
             f"{'variant':<12} {'ms':>9} {'x maml':>7} {'peak MB':>9} {'x maml':>7}"]  # fmt: skip
    for r in result["rows"]:
        mem = "-" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        ratio = "-" if r["memory_ratio"] is None else f"{r['memory_ratio']:.2f}"
        lines.append(f"{r['variant']:<12} {r['ms']:>9.1f} {r['time_ratio']:>7.2f} {mem:>9} {ratio:>7}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hyper-wrn-10-1")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--meta-batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny: 8 px, 2 steps, 1 rep")
    p.add_argument("--json", default=None, help="also write the result as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.steps, args.reps, args.queries = 8, 2, 1, 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
