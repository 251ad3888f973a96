"""Memory and time of one second-order meta-step versus the inner steps, with and without the
checkpointed inner loop (``MAML(inner_checkpoint=N)``; Baranchuk et al. 2019): the
``--steps-sweep`` mode of ``tools/bench_meta.py``.

Per (inner steps, checkpoint interval), on ONE task of one model (backend ``func``):

* ``peak_mb``: peak memory of one meta-step above the memory in use before it
  (:func:`bench_meta.peak_memory`: on a CPU the C heap in use, on CUDA
  ``torch.cuda.max_memory_allocated``), measured on the first, untimed meta-step;
* ``ms``: median wall time of ``--reps`` more meta-steps, the intervals interleaved per rep.

Summary: per interval, ``memory_growth`` = peak at the most steps / peak at the fewest; per step
count, ``time_ratio`` = time with the interval / time without checkpointing (interval 0).
``--plot FILE``: a PNG of memory and time versus steps, one line per interval.

Usage::

    python tools/bench_meta.py --steps-sweep 5,10,20,40 --inner-checkpoint 0,1 --models hyper-wrn-16-2 \\
        --variant 1 --shots 1 --reps 3 --json sweep.json --plot docs/inner-checkpoint.png
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import torch

from metahyper.meta import MAML
from metahyper.models import build_model, resolve_groups


def sweep_model(name: str, variant: int, ways: int, device, dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    model = (
        build_model(name, variant=variant, num_classes=ways)
        if name.startswith("hyper-")
        else build_model(name, num_classes=ways)
    )
    return model.to(device=device, dtype=dtype).train()


def run_sweep(args, peak_memory: Callable, make_tasks: Callable) -> list[dict]:
    """Rows ``{model, variant, shots, size, steps, inner_checkpoint, peak_mb, ms, ms_all}`` for every
    model, shot count, step count and interval of ``args`` (``peak_memory`` and ``make_tasks``:
    those of ``bench_meta``)."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows = []
    for name in args.models:
        for shots in args.shots:
            size = args.sizes[0]
            model = sweep_model(name, args.variant, args.ways, device, dtype)
            tasks = make_tasks(1, args.ways, shots, args.queries, size, device, dtype, torch.contiguous_format)
            _, _, inner, outer = resolve_groups(model)
            variant = args.variant if name.startswith("hyper-") else None
            for steps in args.steps_sweep:
                mamls = {
                    k: MAML(model, inner=inner, outer=outer, inner_steps=steps, inner_checkpoint=k)
                    for k in args.inner_checkpoint
                }

                def step(k: int, model=model, mamls=mamls, tasks=tasks) -> None:
                    model.zero_grad(set_to_none=True)
                    mamls[k].meta_step(tasks)

                found = {}
                for k in mamls:
                    with peak_memory(device) as pm:
                        step(k)
                    found[k] = {"peak_mb": None if pm["peak_bytes"] is None else pm["peak_bytes"] / 2**20, "ms_all": []}
                for _ in range(args.reps):
                    for k in mamls:
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        t = time.perf_counter()
                        step(k)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        found[k]["ms_all"].append(round((time.perf_counter() - t) * 1e3, 1))
                for k, r in found.items():
                    rows.append(
                        {
                            "model": name,
                            "variant": variant,
                            "shots": shots,
                            "size": size,
                            "steps": steps,
                            "inner_checkpoint": k,
                            "peak_mb": r["peak_mb"],
                            "ms": statistics.median(r["ms_all"]),
                            "ms_all": r["ms_all"],
                        }
                    )
                print(f"  done {name} {shots}-shot {steps} steps", file=sys.stderr, flush=True)
    return rows


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["model"], r["variant"], r["shots"], r["size"]), []).append(r)
    return out


def summarize_sweep(rows: list[dict]) -> list[dict]:
    """Per (model, variant, shots, size): memory growth per interval (peak at most / fewest steps)
    and, per step count, each interval's time over the time without checkpointing."""
    out = []
    for (name, variant, shots, size), group in _groups(rows).items():
        steps = sorted({r["steps"] for r in group})
        at = {(r["steps"], r["inner_checkpoint"]): r for r in group}
        growth = {}
        for k in sorted({r["inner_checkpoint"] for r in group}):
            lo, hi = at[(steps[0], k)]["peak_mb"], at[(steps[-1], k)]["peak_mb"]
            growth[k] = hi / lo if lo and hi is not None else None
        ratios = {
            s: {k: at[(s, k)]["ms"] / at[(s, 0)]["ms"] for (s2, k) in at if s2 == s and k}
            for s in steps
            if (s, 0) in at
        }
        out.append(
            {
                "model": name,
                "variant": variant,
                "shots": shots,
                "size": size,
                "steps": [steps[0], steps[-1]],
                "memory_growth": growth,
                "time_ratio": ratios,
            }
        )
    return out


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def format_sweep(result: dict) -> str:
    intervals = result["config"]["inner_checkpoint"]
    head = "".join(f"{f'peak MB ck={k}':>14}" for k in intervals) + "".join(f"{f'ms ck={k}':>11}" for k in intervals)
    head += "".join(f"{f'time ck={k}/0':>13}" for k in intervals if k)
    lines = [f"one second-order meta-step of one task (backend func); peak memory: {result['machine']['peak_memory']}"]
    for (name, variant, shots, size), group in _groups(result["rows"]).items():
        label = f"{name}" + (f" (variant {variant})" if variant else "")
        lines.append(f"{label}, {shots}-shot, {size}px")
        lines.append(f"{'steps':>6}{head}")
        at = {(r["steps"], r["inner_checkpoint"]): r for r in group}
        for s in sorted({r["steps"] for r in group}):
            mem = "".join(f"{_mb(at[(s, k)]['peak_mb']):>14}" for k in intervals)
            ms = "".join(f"{at[(s, k)]['ms']:>11.0f}" for k in intervals)
            ratio = "".join(
                f"{at[(s, k)]['ms'] / at[(s, 0)]['ms']:>12.2f}x" if (s, 0) in at else f"{'-':>13}"
                for k in intervals
                if k
            )
            lines.append(f"{s:>6}{mem}{ms}{ratio}")
    for summary in result["summary"]:
        growth = ", ".join(f"ck={k}: {g:.2f}x" for k, g in summary["memory_growth"].items() if g is not None)
        lines.append(
            f"{summary['model']} {summary['shots']}-shot: peak memory {summary['steps'][0]} -> {summary['steps'][1]} "
            f"steps: {growth}"
        )
    return "\n".join(lines)


def plot_sweep(result: dict, output: str) -> None:
    """Memory and time versus inner steps, one line per (model, shots, interval), PNG at ``output``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from metahyper.io import atomic_path

    fig = Figure(figsize=(10, 4), layout="constrained")
    mem_ax, time_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for (name, variant, shots, _), group in _groups(result["rows"]).items():
        for k in sorted({r["inner_checkpoint"] for r in group}):
            rows = sorted((r for r in group if r["inner_checkpoint"] == k), key=lambda r: r["steps"])
            label = f"{name}{f' ({variant})' if variant else ''} {shots}-shot, " + (
                "no checkpoint" if not k else f"checkpoint every {k}"
            )
            style = "-" if not k else "--"
            steps = [r["steps"] for r in rows]
            if all(r["peak_mb"] is not None for r in rows):
                mem_ax.plot(steps, [r["peak_mb"] for r in rows], style, marker="o", label=label)
            time_ax.plot(steps, [r["ms"] / 1e3 for r in rows], style, marker="o", label=label)
    mem_ax.set(xlabel="inner steps", ylabel="peak memory of one meta-step (MB)", title="memory")
    time_ax.set(xlabel="inner steps", ylabel="time of one meta-step (s)", title="time")
    for ax in (mem_ax, time_ax):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    mem_ax.legend(fontsize=8)
    FigureCanvasAgg(fig)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
