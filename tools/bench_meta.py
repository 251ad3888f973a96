#!/usr/bin/env python
"""Benchmark one MAML meta-step: the default backend against stock ``higher`` (and, with
``--backends``, any backend of :data:`metahyper.meta.BACKENDS` or of :data:`VARIANTS`).

Per row (model, shots, order, image size) and per backend, in ONE process, on the same model and
the same tasks:

* ``ms``: median wall time of one ``MAML.meta_step`` over ``--reps`` (>= 5) timed runs, after
  warm-up; the backends' runs are interleaved (rep 1 of each, rep 2 of each, ...) so that load
  from other processes hits them alike. ``tasks_s`` = meta-batch / median time.
* ``gflop``: FLOPs of one meta-step counted with :class:`torch.utils.flop_counter.FlopCounterMode`
  (convolutions and matmuls, forward and every backward; elementwise ops are not FLOPs there). Its
  per-module tracker is switched off: its backward hooks raise inside ``torch.autograd.grad`` on
  leaves (torch 2.14), which MAML's inner loop calls. ``gflop_s`` = gflop / median time;
  ``frac_conv`` = gflop_s / the single-conv throughput (see below) measured beside the row.
* ``necessary_gflop``: the FLOPs of the minimal algorithm (:func:`necessary_meta_step`: inner
  gradients only w.r.t. the adapted parameters, outer backward only to the outer parameters, no
  graph in first order, nothing else), counted the same way.
* ``peak_mb``: peak memory of one meta-step above the memory in use before it. CPU: the C heap in
  use (glibc ``mallinfo2``: ``uordblks + hblkhd``, i.e. every live malloc/mmap allocation, which is
  where torch's CPU tensors live), sampled every 0.5 ms by a thread. CUDA:
  ``torch.cuda.max_memory_allocated`` above ``memory_allocated``. Measured on a meta-step of ONE
  task (untimed): each task's graph is released by its backward before the next task starts, so
  the peak of a meta-batch is the peak of one task (the accumulated ``.grad`` is allocated by then).
  Except ``vmap``, which keeps every task's graph at once: its FLOPs and peak are measured on the
  whole meta-batch (its peak is ~meta-batch x that of one task).
* ``ratio``: stock higher time / default time (> 1: the default is faster).
* ``conv_call_ms`` (``--conv-calls``, CPU): the wall time inside convolution calls
  (``aten.convolution``, ``aten.convolution_backward``) of one more meta-step, timed by a
  dispatch mode; ``conv_call_share`` = that / ``ms``; ``conv_call_frac_conv`` = gflop / that time /
  ``conv_gflop_s``: the conv% the row would reach if nothing but its convolution calls took time
  (its ceiling at these kernel shapes).
* ``summary`` (printed last): per backend over all rows, total FLOPs / total time, and
  ``frac_conv`` = total FLOPs / the work the reference conv would have done in the same time (each
  row's time x that row's ``conv_gflop_s``), with the rows' lowest and highest ``frac_conv``.

Machine throughput, measured in the same run and printed first: ``conv_gflop_s``, the best
forward throughput of the 3x3 convolutions of a WRN stage at the query batch, in NCHW or
channels_last (the fastest kernel the model runs), and ``matmul_gflop_s`` (square matmul). The
machine's speed drifts during a run (other tenants), so that reference conv is timed again after
each rep of each row (all backends once, then the conv); the row's ``conv_gflop_s`` is the median
of those, and its ``frac_conv`` is relative to it.

Backends: ``func`` is MAML's default (on a CPU: channels_last images and our BatchNorm and
convolution double backwards, :mod:`metahyper.meta.kernels`). :data:`VARIANTS` take one of its
speed tricks away each, for the A/B that keeps or deletes a trick: ``func-nchw`` (NCHW images),
``func-torch-bn`` (PyTorch's BatchNorm double backward), ``func-torch-conv`` (PyTorch's convolution
double backward), ``plain`` (none of them: the base backend); ``stock_higher`` is the baseline
(:mod:`stock_higher` beside this file), with NCHW images as a user writes it unless
``--channels-last``.

Usage::

    python tools/bench_meta.py                   # CPU default set, < 10 min on 2 cores
    python tools/bench_meta.py --quick --json out.json   # seconds; used by the test suite
    python tools/bench_meta.py --models hyper-wrn-16-4,wrn-16-4 --sizes 84 --shots 1,5 --device cuda
    python tools/bench_meta.py --quick --backends func,vmap,stock_higher   # seconds, any backends
    python tools/bench_meta.py --shots 1 --orders 2 --conv-calls   # + time inside convolution calls (CPU)
    python tools/bench_meta.py --steps-sweep 5,10,20,40 --inner-checkpoint 0,1 --shots 1 --plot mem.png
        # memory and time versus inner steps, with and without the checkpointed inner loop (bench_steps.py)

JSON (``--json``): {"machine": {...}, "config": {...}, "rows": [{...per row...}]}.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from metahyper.io import write_json
from metahyper.meta import BACKENDS, MAML, Backend, batchnorm_mode
from metahyper.meta.backends import FuncBackend
from metahyper.meta.kernels import MetaKernels
from metahyper.models import build_model, resolve_groups

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_steps  # noqa: E402
from stock_higher import StockHigherBackend  # noqa: E402


class FuncNCHW(FuncBackend):
    """``func`` with the images as given (NCHW)."""

    images = Backend.images


class FuncTorchBatchNorm(FuncBackend):
    """``func`` with PyTorch's BatchNorm double backward (ours for convolutions only)."""

    def inner_context(self, mode, x):
        return MetaKernels(batchnorm=False) if mode == "second" else Backend.inner_context(self, mode, x)


class FuncTorchConv(FuncBackend):
    """``func`` with PyTorch's convolution double backward (ours for BatchNorm only)."""

    def inner_context(self, mode, x):
        return MetaKernels(conv=False) if mode == "second" else Backend.inner_context(self, mode, x)


VARIANTS: dict[str, type[Backend]] = {
    "stock_higher": StockHigherBackend,
    "func-nchw": FuncNCHW,
    "func-torch-bn": FuncTorchBatchNorm,
    "func-torch-conv": FuncTorchConv,
    "plain": Backend,
}
AUTOCAST_BACKENDS = ("func", "vmap")  # --autocast applies to these (higher's patched modules: not tried)
BATCHED_BACKENDS = ("vmap",)  # hold the whole meta-batch's graph at once: measured on the full meta-batch

# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


class _NoModuleTracker:
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


class CountFlops(FlopCounterMode):
    """FlopCounterMode without its per-module tracker (whose hooks break autograd.grad on leaves)."""

    def __init__(self) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModuleTracker()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap_in_use_fn():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2

        def in_use() -> int:
            info = libc.mallinfo2()
            return info.uordblks + info.hblkhd

        in_use()
        return in_use
    except (OSError, AttributeError):
        return None


_HEAP_IN_USE = _heap_in_use_fn()


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict]:
    """Yields a dict whose ``peak_bytes`` is set on exit (None when it cannot be measured)."""
    out: dict = {"peak_bytes": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield out
        torch.cuda.synchronize(device)
        out["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
        return
    if _HEAP_IN_USE is None:
        yield out
        return
    base = _HEAP_IN_USE()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _HEAP_IN_USE())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _HEAP_IN_USE())
        out["peak_bytes"] = peak[0] - base


class ConvCallTimer(TorchDispatchMode):
    """Wall time spent inside convolution calls (``aten.convolution`` and
    ``aten.convolution_backward``, forward and every backward) while active, in ``seconds``. CPU
    only (CUDA launches are asynchronous); thread-local, like FlopCounterMode."""

    CALLS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func not in self.CALLS:
            return func(*args, **(kwargs or {}))
        t = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - t
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def reference_conv(device: torch.device, dtype: torch.dtype, shape: Sequence[int], memory_format: str, reps: int = 3):
    """A function timing the reference convolution (3x3, padding 1, ``shape`` = [N, C, H, W], C in
    and out, in ``memory_format``): its forward GFLOP/s, median of ``reps`` calls."""
    n, c, h, w_ = shape
    fmt = getattr(torch, memory_format)
    x = torch.randn(n, c, h, w_, device=device, dtype=dtype).contiguous(memory_format=fmt)
    w = torch.randn(c, c, 3, 3, device=device, dtype=dtype).contiguous(memory_format=fmt)
    flops = 2 * n * c * c * 9 * h * w_

    def measure() -> float:
        with torch.no_grad():
            return flops / _median_time(lambda: F.conv2d(x, w, padding=1), device, reps) / 1e9

    return measure


def machine_throughput(device: torch.device, dtype: torch.dtype, batch: int, size: int, k: int, reps: int) -> dict:
    """Best forward GFLOP/s over the 3x3 convs of a WRN-16-k stage at this batch, in either memory
    format (the reference conv), and a matmul."""
    best = {"conv_gflop_s": 0.0}
    for stage, width in enumerate((16 * k, 32 * k, 64 * k)):
        s = max(1, size // (2**stage))
        for fmt in ("contiguous_format", "channels_last"):
            gflop_s = reference_conv(device, dtype, [batch, width, s, s], fmt, reps)()
            if gflop_s > best["conv_gflop_s"]:
                best = {"conv_gflop_s": gflop_s, "conv_shape": [batch, width, s, s], "conv_format": fmt}
    n = 1024 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = _median_time(lambda: a @ b, device, reps)
    best["matmul_gflop_s"] = 2 * n**3 / t / 1e9
    best["matmul_n"] = n
    return best


# ------------------------------------------------------------------------------------------------
# The minimal algorithm (for the necessary FLOP count)
# ------------------------------------------------------------------------------------------------


def necessary_meta_step(model, tasks, inner, outer, *, steps: int, lr: float, first_order: bool) -> None:
    """MAML with nothing but the necessary work: inner gradients w.r.t. the adapted parameters
    only (no graph in first order), one query pass, backward into the outer parameters only."""
    named = dict(model.named_parameters())
    outer_set = set(outer)
    with batchnorm_mode(model, "transductive"):
        for t in tasks:
            if first_order:
                const = {n: p.detach() for n, p in named.items() if n not in inner}
                fast = {n: named[n].detach().requires_grad_() for n in inner}
                for _ in range(steps):
                    loss = F.cross_entropy(functional_call(model, {**const, **fast}, (t.support_x,)), t.support_y)
                    grads = torch.autograd.grad(loss, list(fast.values()))
                    with torch.no_grad():
                        fast = {n: (p - lr * g).requires_grad_() for (n, p), g in zip(fast.items(), grads)}
                adapted = {
                    n: (named[n] + (f.detach() - named[n].detach()) if n in outer_set else f.detach())
                    for n, f in fast.items()
                }
            else:
                fast = {n: (named[n] if n in outer_set else named[n].detach().requires_grad_()) for n in inner}
                for _ in range(steps):
                    loss = F.cross_entropy(functional_call(model, fast, (t.support_x,)), t.support_y)
                    grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
                    fast = {n: p - lr * g for (n, p), g in zip(fast.items(), grads)}
                adapted = fast
            const = {n: p.detach() for n, p in named.items() if n not in outer_set and n not in adapted}
            loss = F.cross_entropy(functional_call(model, {**const, **adapted}, (t.query_x,)), t.query_y)
            torch.autograd.backward(loss / len(tasks), inputs=[named[n] for n in outer])


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------


def backend_class(name: str) -> type[Backend]:
    """The backend class of a benchmark backend name (:data:`BACKENDS` or :data:`VARIANTS`)."""
    return BACKENDS[name] if name in BACKENDS else VARIANTS[name]


def make_tasks(n, ways, shots, queries, size, device, dtype, memory_format, seed=1):
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        sx = torch.randn(ways * shots, 3, size, size, generator=g)
        qx = torch.randn(ways * queries, 3, size, size, generator=g)
        tasks.append(
            SimpleNamespace(
                support_x=sx.to(device, dtype).contiguous(memory_format=memory_format),
                support_y=torch.arange(ways, device=device).repeat(shots),
                query_x=qx.to(device, dtype).contiguous(memory_format=memory_format),
                query_y=torch.arange(ways, device=device).repeat(queries),
            )
        )
    return tasks


def make_model(name: str, ways: int, device, dtype, memory_format):
    torch.manual_seed(0)
    model = (
        build_model(name, variant=2, num_classes=ways)
        if name.startswith("hyper-")
        else build_model(name, num_classes=ways)
    )
    return model.to(device=device, dtype=dtype, memory_format=memory_format).train()


def run_row(args, name: str, shots: int, first_order: bool, size: int, machine: dict) -> dict:
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = make_model(name, args.ways, device, dtype, fmt)
    tasks = make_tasks(args.meta_batch, args.ways, shots, args.queries, size, device, dtype, fmt)
    autocast = getattr(torch, args.autocast) if args.autocast else None
    backends = args.backends
    _, _, inner, outer = resolve_groups(model)
    mamls = {
        b: MAML(
            model,
            inner=inner,
            outer=outer,
            backend=backend_class(b),
            first_order=first_order,
            inner_steps=args.steps,
            autocast=autocast if b in AUTOCAST_BACKENDS else None,
        )
        for b in backends
    }
    out: dict = {
        "model": name,
        "variant": 2 if name.startswith("hyper-") else None,
        "shots": shots,
        "order": 1 if first_order else 2,
        "size": size,
        "backends": {},
    }

    def step(b, batch=tasks):
        model.zero_grad(set_to_none=True)
        mamls[b].meta_step(batch)

    def alive(b):  # the tasks whose graphs are alive at once: a meta-step on these has the meta-batch's peak
        return tasks if b in BATCHED_BACKENDS else tasks[:1]

    for b in list(backends):  # warm-up, counting FLOPs on one task (same shapes: x meta-batch); vmap: all tasks
        batch = tasks if b in BATCHED_BACKENDS else tasks[:1]
        try:
            with CountFlops() as fc:
                step(b, batch)
        except torch.OutOfMemoryError:  # e.g. vmap (all tasks' graphs at once) on a large row: skip it
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            out.setdefault("skipped", {})[b] = "out of memory"
            backends = [x for x in backends if x != b]
            print(f"  {name} {shots}-shot: backend {b} out of memory, skipped", file=sys.stderr, flush=True)
            continue
        out["backends"][b] = {"gflop": fc.get_total_flops() * len(tasks) / len(batch) / 1e9}
    if not backends:
        return out
    with CountFlops() as fc:
        inner, outer = mamls[backends[0]].inner_params, mamls[backends[0]].outer_params
        model.zero_grad(set_to_none=True)
        necessary_meta_step(model, tasks[:1], inner, outer, steps=args.steps, lr=0.01, first_order=first_order)
    out["necessary_gflop"] = fc.get_total_flops() * len(tasks) / 1e9
    for b in backends:  # tasks are backpropagated one by one: a meta-step's peak is one task's
        with peak_memory(device) as pm:  # ... except under vmap (every task's graph)
            step(b, alive(b))
        out["backends"][b]["peak_mb"] = None if pm["peak_bytes"] is None else pm["peak_bytes"] / 2**20
    times: dict = {b: [] for b in backends}
    conv = reference_conv(device, dtype, machine["conv_shape"], machine["conv_format"])
    conv_gflop_s = []  # the reference conv beside each rep: this row's conv%, at this row's machine speed
    for _ in range(args.reps):
        for b in backends:
            _sync(device)
            t = time.perf_counter()
            step(b)
            _sync(device)
            times[b].append(time.perf_counter() - t)
        conv_gflop_s.append(conv())
    out["conv_gflop_s"] = statistics.median(conv_gflop_s)
    for b in backends:
        r = out["backends"][b]
        r["ms"] = statistics.median(times[b]) * 1e3
        r["ms_all"] = [round(x * 1e3, 1) for x in times[b]]
        r["tasks_s"] = args.meta_batch / (r["ms"] / 1e3)
        r["gflop_s"] = r["gflop"] / (r["ms"] / 1e3)
        r["frac_conv"] = r["gflop_s"] / out["conv_gflop_s"]
    for r in out["backends"].values():
        r["flop_over_necessary"] = r["gflop"] / out["necessary_gflop"]
    if args.conv_calls:  # one more (untimed) step per backend: how much of it is spent inside convolution calls
        for b in backends:
            with ConvCallTimer() as timer:
                step(b)
            r = out["backends"][b]
            r["conv_call_ms"] = timer.seconds * 1e3
            r["conv_call_share"] = r["conv_call_ms"] / r["ms"]  # of the median (timed, untraced) meta-step
            r["conv_call_frac_conv"] = (
                r["gflop"] / timer.seconds / out["conv_gflop_s"]
            )  # the conv% if only they took time
    d = out["backends"][backends[0]]  # the reference of the ratios: the first backend (func by default)
    if "stock_higher" in out["backends"] and backends[0] != "stock_higher":
        s = out["backends"]["stock_higher"]
        out["ratio"] = s["ms"] / d["ms"]
        out["flop_ratio"] = s["gflop"] / d["gflop"]
        out["mem_ratio"] = (d["peak_mb"] / s["peak_mb"]) if (d["peak_mb"] and s["peak_mb"]) else None
    return out


def summarize(rows: Sequence[dict]) -> dict:
    """Per backend over all rows: its total FLOPs over its total time, and over the work the
    reference conv would have done in that time at each row's speed (time-weighted conv%)."""
    out: dict = {}
    for row in rows:
        for b, r in row["backends"].items():
            s = out.setdefault(b, {"gflop": 0.0, "seconds": 0.0, "ref_gflop": 0.0, "fracs": []})
            s["gflop"] += r["gflop"]
            s["seconds"] += r["ms"] / 1e3
            s["ref_gflop"] += r["ms"] / 1e3 * row["conv_gflop_s"]
            s["fracs"].append(r["frac_conv"])
    for s in out.values():
        fracs = s.pop("fracs")
        s.update(
            rows=len(fracs),
            gflop_s=s["gflop"] / s["seconds"],
            frac_conv=s["gflop"] / s["ref_gflop"],
            frac_conv_min=min(fracs),
            frac_conv_max=max(fracs),
        )
    return out


def format_table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"device {m['device']} ({m['cpu']}), threads {m['threads']}, dtype {result['config']['dtype']}; "
        f"reference conv {m['conv_gflop_s']:.1f} GFLOP/s at the start "
        f"(fwd 3x3 conv {m['conv_shape']}, {m['conv_format']}), "
        f"matmul {m['matmul_gflop_s']:.1f} GFLOP/s; "
        "conv% = GFLOP/s / the reference conv timed beside the row's reps ('ref')",
        f"{'model':<16}{'shot':>4}{'ord':>4}{'px':>4}{'ref':>5} | "
        f"{'backend':<12}{'ms':>9}{'tasks/s':>8}{'GFLOP':>8}{'GFLOP/s':>8}"
        f"{'conv%':>6}{'peakMB':>8} | {'x stock':>7}{'FLOP/nec':>9}",
    ]
    for row in result["rows"]:
        for b, why in row.get("skipped", {}).items():
            lines.append(
                f"{row['model']:<16}{row['shots']:>4}{row['order']:>4}{row['size']:>4}{'':>5} | {b:<12} skipped: {why}"
            )
        first = True
        for b, r in row["backends"].items():
            head = (
                f"{row['model']:<16}{row['shots']:>4}{row['order']:>4}{row['size']:>4}{row['conv_gflop_s']:>5.0f}"
                if first
                else " " * 33
            )
            peak = "n/a" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}"
            tail = ""
            stock = row["backends"].get("stock_higher")
            ratio = f"{stock['ms'] / r['ms']:.2f}" if stock else "-"
            tail = f" | {ratio:>7}{r['flop_over_necessary']:>9.3f}"
            lines.append(
                f"{head} | {b:<12}{r['ms']:>9.1f}{r['tasks_s']:>8.2f}{r['gflop']:>8.1f}{r['gflop_s']:>8.1f}"
                f"{min(999.0, 100 * r['frac_conv']):>5.0f}%{peak:>8}{tail}"
            )
            first = False
    calls = [(row, b, r) for row in result["rows"] for b, r in row["backends"].items() if "conv_call_ms" in r]
    if calls:
        lines.append(
            "time inside convolution calls (--conv-calls; one more meta-step per backend, its convolutions timed):"
        )
        for row, b, r in calls:
            lines.append(
                f"  {row['model']:<16}{row['shots']:>4}{row['order']:>4}{row['size']:>4} | "
                f"{b:<12}{r['conv_call_ms']:>9.1f} ms "
                f"= {100 * r['conv_call_share']:.0f}% of the meta-step; conv% of those calls alone "
                f"{100 * r['conv_call_frac_conv']:.0f}% (the row's: {100 * r['frac_conv']:.0f}%)"
            )
    for b, s in result.get("summary", {}).items():
        lines.append(
            f"all {s['rows']} rows, {b}: {s['gflop_s']:.1f} GFLOP/s, {100 * s['frac_conv']:.0f}% of the reference "
            f"conv (time-weighted; rows {100 * s['frac_conv_min']:.0f}-{100 * s['frac_conv_max']:.0f}%)"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    csv = lambda cast: lambda s: [cast(x) for x in s.split(",") if x]  # noqa: E731
    p.add_argument(
        "--models",
        type=csv(str),
        default=["hyper-wrn-16-2", "wrn-16-2"],
        help="comma list (hyper-* built as variant 2)",
    )
    p.add_argument("--shots", type=csv(int), default=[1, 5])
    p.add_argument("--orders", type=csv(int), default=[2, 1], help="2 = second order, 1 = first order")
    p.add_argument("--sizes", type=csv(int), default=[32], help="image sizes (84 for miniImageNet)")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--queries", type=int, default=15, help="query images per class")
    p.add_argument("--steps", type=int, default=5, help="inner steps")
    p.add_argument("--meta-batch", type=int, default=4)
    p.add_argument("--reps", type=int, default=5, help="timed meta-steps per backend (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--channels-last", action="store_true", help="model and images in channels_last")
    p.add_argument(
        "--autocast", default=None, help="autocast dtype for the func and vmap backends, e.g. bfloat16 (CUDA)"
    )
    p.add_argument(
        "--backends",
        type=csv(str),
        default=None,
        help=f"comma list among {','.join([*BACKENDS, *VARIANTS])}, timed in this order (the first is the "
        "reference of FLOP/nec); default: func [+ higher with --with-higher] [+ stock_higher unless --no-stock]",
    )
    p.add_argument(
        "--with-higher", action="store_true", help="also time the restricted higher backend (without --backends)"
    )
    p.add_argument("--no-stock", action="store_true", help="skip stock higher (without --backends)")
    p.add_argument(
        "--conv-calls",
        action="store_true",
        help="CPU: also time the convolution calls inside one more meta-step per backend (the share of the "
        "step they take, and the conv%% they alone would give: the ceiling of the row)",
    )
    p.add_argument(
        "--steps-sweep",
        type=csv(int),
        default=None,
        help="memory-versus-steps mode (bench_steps.py): one second-order meta-step of one task at each of "
        "these inner step counts, for each --inner-checkpoint interval (first model, size; every --shots)",
    )
    p.add_argument(
        "--inner-checkpoint",
        type=csv(int),
        default=[0, 1],
        help="--steps-sweep: checkpoint intervals of the inner loop (0: off)",
    )
    p.add_argument("--variant", type=int, default=2, help="--steps-sweep: variant of hyper-* models")
    p.add_argument("--plot", default=None, help="--steps-sweep: PNG of memory and time versus steps")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration (seconds)")
    p.add_argument("--json", default=None, help="write the result as JSON to this file ('-' = stdout)")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.shots, args.orders, args.sizes = ["hyper-wrn-10-1"], [1], [2, 1], [16]
        args.ways, args.queries, args.steps, args.meta_batch, args.reps = 3, 2, 2, 2, 2
        if args.steps_sweep:
            args.steps_sweep, args.reps = [1, 3], 1
    if args.steps_sweep and (min(args.steps_sweep) < 1 or min(args.inner_checkpoint) < 0):
        p.error("--steps-sweep needs step counts >= 1 and --inner-checkpoint intervals >= 0")
    if args.backends is None:
        args.backends = (
            ["func"] + (["higher"] if args.with_higher else []) + ([] if args.no_stock else ["stock_higher"])
        )
    unknown = [b for b in args.backends if b not in BACKENDS and b not in VARIANTS]
    if unknown or not args.backends:
        p.error(f"--backends: unknown {unknown}; choose among {','.join([*BACKENDS, *VARIANTS])}")
    args.backends = list(dict.fromkeys(args.backends))
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    if args.reps < 1:
        p.error("--reps must be >= 1")
    if args.conv_calls and not args.device.startswith("cpu"):
        p.error("--conv-calls times convolution calls on a CPU only (CUDA launches are asynchronous)")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    t0 = time.perf_counter()
    if args.steps_sweep:
        return steps_sweep(args, device, t0)
    k = max(int(m.rsplit("-", 1)[-1]) for m in args.models)
    machine = machine_throughput(device, dtype, args.ways * args.queries, max(args.sizes), k, max(3, args.reps))
    machine.update(
        device=str(device),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        cpu=platform.processor() or platform.machine(),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        peak_memory=(
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "glibc mallinfo2 heap in use, sampled every 0.5 ms"
            if _HEAP_IN_USE
            else None
        ),
    )
    rows = []
    for size in args.sizes:
        for name in args.models:
            for shots in args.shots:
                for order in args.orders:
                    rows.append(run_row(args, name, shots, order == 1, size, machine))
                    print(
                        f"  done {name} {shots}-shot order {order} {size}px ({time.perf_counter() - t0:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
    config = {k: v for k, v in vars(args).items() if k != "json"}
    result = {
        "machine": machine,
        "config": config,
        "rows": rows,
        "summary": summarize(rows),
        "seconds": time.perf_counter() - t0,
    }
    if args.json == "-":
        print(json.dumps(result, indent=1))
    elif args.json:
        write_json(args.json, result)
    print(format_table(result))
    return result


def steps_sweep(args, device: torch.device, t0: float) -> dict:
    """The ``--steps-sweep`` mode (:mod:`bench_steps`): JSON, table and optional PNG."""
    args.inner_checkpoint = sorted(set(args.inner_checkpoint))
    rows = bench_steps.run_sweep(args, peak_memory, make_tasks)
    machine = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "peak_memory": (
            "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "glibc mallinfo2 heap in use, sampled every 0.5 ms"
            if _HEAP_IN_USE
            else None
        ),
    }
    config = {k: v for k, v in vars(args).items() if k not in ("json", "plot")}
    result = {
        "machine": machine,
        "config": config,
        "rows": rows,
        "summary": bench_steps.summarize_sweep(rows),
        "seconds": time.perf_counter() - t0,
    }
    if args.json == "-":
        print(json.dumps(result, indent=1))
    elif args.json:
        write_json(args.json, result)
    if args.plot:
        bench_steps.plot_sweep(result, args.plot)
    print(bench_steps.format_sweep(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
