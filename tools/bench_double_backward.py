#!/usr/bin/env python
"""Time the layers whose double backward is ours as second-order MAML runs them: forward,
backward with ``create_graph=True``, then the double backward; PyTorch's against ours, in NCHW and
channels_last:

* ``batchnorm``: ``F.batch_norm`` with batch statistics against
  :func:`metahyper.meta.batchnorm.batch_norm_train`;
* ``conv``: ``F.conv2d`` (3x3, C -> C, padding 1) against
  :func:`metahyper.meta.convolution.conv2d_train`.

Usage::

    python tools/bench_double_backward.py                # the shapes of a Hyper-WRN-16-2 meta-step
    python tools/bench_double_backward.py --layers conv --shapes 25x32x32x32 --reps 50 --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from metahyper.io import write_json
from metahyper.meta.batchnorm import batch_norm_train
from metahyper.meta.convolution import conv2d_train

Layer = Callable[[Tensor, Tensor, Tensor], Tensor]
LAYERS: dict[str, dict[str, Layer]] = {
    "batchnorm": {
        "pytorch": lambda x, w, b: F.batch_norm(x, None, None, w, b, True, 0.0, 1e-5),
        "ours": lambda x, w, b: batch_norm_train(x, w, b, 1e-5),
    },
    "conv": {
        "pytorch": lambda x, w, b: F.conv2d(x, w, None, 1, 1),
        "ours": lambda x, w, b: conv2d_train(x, w, None, 1, 1),
    },
}


def _bench_meta():
    spec = importlib.util.spec_from_file_location("bench_meta", Path(__file__).with_name("bench_meta.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_ms(fn, reps: int) -> float:
    """Median ms of ``reps`` calls after a warm-up call (the meta-step benchmark's timer)."""
    return _bench_meta()._median_time(fn, torch.device("cpu"), reps) * 1e3


def bench(layer: str, shape: list[int], channels_last: bool, reps: int) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, generator=g).contiguous(memory_format=fmt).requires_grad_()
    if layer == "batchnorm":
        w = torch.rand(c, generator=g).add_(0.5).requires_grad_()
    else:
        w = (torch.randn(c, c, 3, 3, generator=g) / (3 * c**0.5)).requires_grad_()
    b = torch.randn(c, generator=g).requires_grad_()
    gy = torch.randn(shape, generator=g).contiguous(memory_format=fmt)
    out = {}
    for name, fn in LAYERS[layer].items():

        def second_order(fn=fn):
            gx, gw = torch.autograd.grad(fn(x, w, b), (x, w), gy, create_graph=True)
            torch.autograd.grad((gx * gy).sum() + (gw * gw).sum(), (x, w))

        out[name] = time_ms(second_order, reps)
    return {
        "layer": layer,
        "shape": shape,
        "format": "channels_last" if channels_last else "nchw",
        "ms": out,
        "speedup": out["pytorch"] / out["ours"],
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", default="batchnorm,conv", help=f"comma list among {','.join(LAYERS)}")
    p.add_argument(
        "--shapes",
        default="25x32x32x32,25x64x16x16,25x128x8x8,5x32x32x32,75x32x32x32",
        help="comma list of NxCxHxW (default: 5-shot support, 1-shot support, query of a Hyper-WRN-16-2 at 32 px)",
    )
    p.add_argument("--reps", type=int, default=20, help="timed calls per case (median)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    layers = [s for s in args.layers.split(",") if s]
    unknown = [s for s in layers if s not in LAYERS]
    if unknown or not layers:
        p.error(f"--layers: unknown {unknown}; choose among {','.join(LAYERS)}")
    torch.set_num_threads(args.threads)
    rows = [
        bench(layer, [int(v) for v in s.split("x")], cl, args.reps)
        for layer in layers
        for s in args.shapes.split(",")
        for cl in (False, True)
    ]
    print(f"forward + backward + double backward, median ms ({args.threads} threads, float32)")
    print(f"{'layer':<11}{'shape':<16}{'format':<15}{'pytorch':>9}{'ours':>9}{'x':>7}")
    for r in rows:
        print(
            f"{r['layer']:<11}{'x'.join(map(str, r['shape'])):<16}{r['format']:<15}{r['ms']['pytorch']:>9.2f}"
            f"{r['ms']['ours']:>9.2f}{r['speedup']:>7.2f}"
        )
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
