#!/usr/bin/env python
"""CUDA run of tools/bench_meta.py: 84x84, WRN-16-4 and Hyper-WRN-16-4 (variant 2),
5-way 1- and 5-shot, 15 queries per class, 5 inner steps, meta-batch 4, second and first order:
fp32 with backends func, vmap (all 4 tasks in one vmapped computation), restricted higher and stock
higher; then func and vmap with bf16 autocast + channels_last; then the memory-versus-steps sweep of
the checkpointed inner loop (``bench_meta --steps-sweep``): one second-order meta-step of one 1-shot
task of WRN-16-4 and Hyper-WRN-16-4 (variant 1, Table 8's) at 84x84, 5 / 10 / 20 / 50 inner steps,
without checkpointing and with intervals 1 and 4, peak ``torch.cuda.max_memory_allocated``. Prints
the tables last; JSON to --out (default bench_meta_gpu.json), the sweep's PNG beside it.

    python tools/bench_meta_gpu.py [--out FILE] [--reps 5] [--backends func,vmap,higher,stock_higher]
                                   [--sweep-steps 5,10,20,50] [--sweep-intervals 0,1,4]
    python tools/bench_meta_gpu.py --smoke     # CPU, bench_meta --quick sizes: checks the wiring only

Budget (one H100, must stay under 8 minutes): 2 models x 2 shots x 2 orders = 8 rows per run. Per
row and backend: 1 FLOP-counting warm-up + 1 peak-memory step of ONE task (vmap: of all 4) and
--reps 5 timed meta-steps of 4 tasks = 22 task-steps (vmap 28). fp32: 3 x 22 + 28 = 94 per row,
752 in all; bf16: 22 + 28 = 50 per row, 400 in all; 1152 task-steps. The heaviest, 5-shot second
order on WRN-16-4 at 84 px, is ~10 TFLOP per task (~6 GFLOP per image forward; 5 inner steps of
25 images with create_graph, 75 queries, the double backward): ~0.3 s at ~30 TFLOP/s achieved
fp32/TF32; 1-shot and first order are 2-5x cheaper, so ~0.15 s per task-step on average: ~115 s
fp32 + ~40 s bf16, plus CUDA start-up, cudnn.benchmark autotuning of each new shape (vmap's
grouped convolutions are new shapes) and the conv/matmul probes: ~3-4 minutes expected. Guards:
a backend that runs out of memory in its warm-up (vmap holds the graphs of all 4 tasks: ~4x one
task's peak) is skipped for that row and reported; the bf16 run is skipped if the fp32 run took
more than --bf16-after-s (default 300 s), so the whole script stays under 8 minutes even if the
estimate is 1.5x optimistic. The sweep runs 85 inner steps per interval, model and rep (~4 x 3 x 2 x
85 = 2040 single-task inner steps of a 5-image support set, second order: well under a minute);
``--sweep-steps ''`` skips it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

from metahyper.io import write_json


def _bench():
    spec = importlib.util.spec_from_file_location("bench_meta", Path(__file__).with_name("bench_meta.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_meta_gpu.json")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument(
        "--backends", default="func,vmap,higher,stock_higher", help="fp32 run; the bf16 run times func,vmap among them"
    )
    p.add_argument("--bf16-after-s", type=float, default=300.0, help="skip the bf16 run if the fp32 run took longer")
    p.add_argument("--sweep-steps", default="5,10,20,50", help="inner steps of the memory sweep ('': no sweep)")
    p.add_argument("--sweep-intervals", default="0,1,4", help="inner-loop checkpoint intervals of the sweep (0: off)")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes (bench_meta --quick): check the script runs")
    args = p.parse_args(argv)
    sweep = [
        "--steps-sweep",
        args.sweep_steps,
        "--inner-checkpoint",
        args.sweep_intervals,
        "--reps",
        "3",
        "--variant",
        "1",
        "--shots",
        "1",
        "--plot",
        str(Path(args.out).with_suffix(".png")),
    ]
    if args.smoke:
        common = ["--quick", "--device", "cpu", "--threads", "1", "--reps", str(args.reps)]
        sweep = ["--quick", "--device", "cpu", "--threads", "1"] + sweep
    else:
        if not torch.cuda.is_available():
            sys.exit(
                "bench_meta_gpu: CUDA is not available; run tools/bench_meta.py for the CPU benchmark (or --smoke)"
            )
        torch.backends.cudnn.benchmark = True
        common = [
            "--device",
            "cuda",
            "--sizes",
            "84",
            "--models",
            "hyper-wrn-16-4,wrn-16-4",
            "--shots",
            "1,5",
            "--orders",
            "2,1",
            "--meta-batch",
            "4",
            "--reps",
            str(args.reps),
            "--threads",
            "8",
        ]
        sweep = ["--device", "cuda", "--sizes", "84", "--models", "wrn-16-4,hyper-wrn-16-4", "--threads", "8"] + sweep
    bench = _bench()
    fp32 = [b for b in args.backends.split(",") if b]
    bf16 = [b for b in fp32 if b in bench.AUTOCAST_BACKENDS]
    t0 = time.perf_counter()
    runs = {"fp32": bench.main(common + ["--backends", ",".join(fp32)])}
    fp32_s = time.perf_counter() - t0
    if not bf16:
        print("bench_meta_gpu: no func/vmap backend given: bf16 run skipped", file=sys.stderr)
    elif fp32_s > args.bf16_after_s:
        print(
            f"bench_meta_gpu: fp32 run took {fp32_s:.0f} s > {args.bf16_after_s:.0f} s: bf16 run skipped",
            file=sys.stderr,
        )
    else:
        runs["bf16_channels_last"] = bench.main(
            common + ["--autocast", "bfloat16", "--channels-last", "--backends", ",".join(bf16)]
        )
    if args.sweep_steps:
        runs["steps_sweep"] = bench.main(sweep)
    write_json(args.out, runs)
    device = "cpu (smoke)" if args.smoke else torch.cuda.get_device_name()
    print(f"\n=== bench_meta_gpu ({time.perf_counter() - t0:.0f} s, {device}) ===")
    for name, result in runs.items():
        print(f"\n[{name}]")
        print(bench.bench_steps.format_sweep(result) if name == "steps_sweep" else bench.format_table(result))
    return runs


if __name__ == "__main__":
    main()
