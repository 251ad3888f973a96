#!/usr/bin/env python
"""CUDA run of tools/bench_meta.py (issue 5): 84x84, WRN-16-4 and Hyper-WRN-16-4 (variant 2),
5-way 1- and 5-shot, 15 queries per class, 5 inner steps, meta-batch 4, second and first order,
default backend vs stock higher; then the default backend with bf16 autocast + channels_last.
Budget: well under 8 minutes on one H100. Prints the tables last; JSON to --out (default
bench_meta_gpu.json).

    python tools/bench_meta_gpu.py [--out FILE] [--reps 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch


def _bench():
    spec = importlib.util.spec_from_file_location("bench_meta", Path(__file__).with_name("bench_meta.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_meta_gpu.json")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_meta_gpu: CUDA is not available; run tools/bench_meta.py for the CPU benchmark")
    torch.backends.cudnn.benchmark = True
    bench = _bench()
    common = ["--device", "cuda", "--sizes", "84", "--models", "hyper-wrn-16-4,wrn-16-4", "--shots", "1,5",
              "--orders", "2,1", "--meta-batch", "4", "--reps", str(args.reps), "--threads", "8"]
    t0 = time.perf_counter()
    runs = {"fp32": bench.main(common + ["--with-higher"])}
    runs["bf16_channels_last"] = bench.main(common + ["--autocast", "bfloat16", "--channels-last", "--no-stock"])
    Path(args.out).write_text(json.dumps(runs, indent=1))
    print(f"\n=== bench_meta_gpu ({time.perf_counter() - t0:.0f} s, {torch.cuda.get_device_name()}) ===")
    for name, result in runs.items():
        print(f"\n[{name}]")
        print(bench.format_table(result))


if __name__ == "__main__":
    main()
