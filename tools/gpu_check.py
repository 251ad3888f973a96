#!/usr/bin/env python
"""GPU readiness: the whole pipeline on CUDA in one command, with its own small data.

    python tools/gpu_check.py [--work DIR] [--out gpu_check.json] [--skip-bench]
    python tools/gpu_check.py --smoke      # the same steps on the CPU at tiny sizes (the test suite runs it)

Steps, in order (each timed; a failing step is reported and the next one runs):

1. ``data``: the glyphs cache (32x32, 10 classes per script, 20 images per class; smoke: 16x16, 5, 12).
2. ``device auto``: ``--device auto`` resolves to CUDA (smoke: to the CPU where there is no GPU).
3. ``pretrain`` a Hyper-WRN-16-4 (variant 1) and a WRN-16-4 for one epoch with ``--device auto``
   (smoke: WRN-10-1 at 8x8).
4. ``meta-train`` a few iterations with the backends func, vmap and higher, second and first order;
   func and vmap again under bf16 autocast; func second order with the checkpointed inner loop
   (``--inner-checkpoint 4``); a plain WRN (func, second order) for the movement plot. On CUDA the
   runs load with 2 DataLoader workers into pinned memory.
5. ``eval`` 50 episodes; ``export`` to the plain network; ``movement-plot`` and ``curves``.
6. ``torchrun`` pretrain and meta-train with one process (the launcher's environment; one rank
   forms no process group), checked equal to the runs of steps 3/4 within the tolerance of the CPU
   tests (rtol 1e-4, atol 1e-5); with more than one visible GPU also two processes (nccl,
   SyncBatchNorm) against one. nccl refuses two ranks on one GPU, so one GPU cannot test it.
7. ``parity``: the float64 meta-gradient of every backend on the device against the CPU ``func``
   reference (itself tested against an independent MAML in ``tests/meta``), relative error <= 1e-8.
8. ``benchmark``: ``tools/bench_meta_gpu.py`` (84x84 table, bf16 run, memory-versus-steps sweep;
   smoke: ``--smoke``), its tables printed as it ends.

The last lines printed are one table (step, status, seconds, key number); exit status 1 if any step
failed. The table is also written as JSON to ``--out``. Budget on one H100/H200: about 2 minutes for
steps 1-7, 3-5 minutes for the benchmark (its own docstring), under 8 minutes in all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

TOOLS = Path(__file__).resolve().parent
RTOL, ATOL = 1e-4, 1e-5  # tests/train/test_distributed.py: float32 sums in another order across ranks
PARITY_TOL = 1e-8


@dataclass
class Check:
    """Sizes of one run of the check (the GPU settings, or the smoke settings on the CPU)."""

    smoke: bool
    work: Path
    device: str
    image_size: int = 32
    glyphs: dict = field(default_factory=lambda: {"image_size": 32, "images_per_class": 20, "max_per_script": 10})
    models: tuple[str, str] = ("hyper-wrn-16-4", "wrn-16-4")
    ways: int = 5
    queries: int = 15
    meta: list[str] = field(
        default_factory=lambda: [
            "--iterations",
            "20",
            "--inner-steps",
            "5",
            "--eval-inner-steps",
            "10",
            "--val-every",
            "20",
            "--val-episodes",
            "20",
        ]
    )
    eval_episodes: int = 50
    workers: int = 2  # DataLoader worker processes (pinned-memory batches on CUDA)
    gpus: int = 0

    @classmethod
    def make(cls, smoke: bool, work: Path) -> Check:
        if not smoke:
            return cls(False, work, "cuda", gpus=torch.cuda.device_count())
        return cls(
            True,
            work,
            "cpu",
            image_size=8,
            glyphs={"image_size": 16, "images_per_class": 12, "max_per_script": 5},
            models=("hyper-wrn-10-1", "wrn-10-1"),
            ways=3,
            queries=2,
            eval_episodes=6,
            workers=0,
            meta=[
                "--iterations",
                "2",
                "--inner-steps",
                "1",
                "--eval-inner-steps",
                "1",
                "--val-every",
                "2",
                "--val-episodes",
                "2",
            ],
        )

    @property
    def data(self) -> Path:
        return self.work / "data"

    def common(self) -> list[str]:
        return ["--data-root", str(self.data), "--quiet"]

    def run_common(self) -> list[str]:
        return [*self.common(), "--workers", str(self.workers)]

    def pretrain_args(self, model: str) -> list[str]:
        return [
            "pretrain",
            "--dataset",
            "glyphs-a",
            "--model",
            model,
            "--image-size",
            str(self.image_size),
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--milestones",
            "1",
            "--device",
            "auto",
            *self.run_common(),
        ]

    def meta_args(self, model: str, *extra: str) -> list[str]:
        return [
            "meta-train",
            "--train",
            "glyphs-a",
            "--test",
            "glyphs-b",
            "--init",
            str(self.work / "pre" / model),
            "--shots",
            "1",
            "--ways",
            str(self.ways),
            "--queries",
            str(self.queries),
            "--meta-batch",
            "4",
            "--save-every",
            "1",
            "--device",
            self.device,
            *self.meta,
            *self.run_common(),
            *extra,
        ]


def metahyper(*args: str) -> None:
    """``metahyper ARGS`` in this process (the click command, as the console script runs it)."""
    from metahyper.cli import main

    code = main.main(list(args), prog_name="metahyper", standalone_mode=False)
    if code:
        raise RuntimeError(f"metahyper {' '.join(args[:1])} exited {code}")


def torchrun(nproc: int, *args: str) -> None:
    """``torchrun --standalone --nproc-per-node N -m metahyper ARGS`` in fresh processes."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "metahyper",
        *args,
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if proc.returncode:
        raise RuntimeError(
            f"torchrun {nproc} x metahyper {args[0]} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _max_state_error(a: Path, b: Path) -> float:
    """Largest ``|x - y| / (ATOL + RTOL |y|)`` over the floating tensors of two checkpoints (<= 1: equal
    within the tolerance); integer tensors must match exactly."""
    from metahyper.train.checkpoint import load_checkpoint

    sa, sb = load_checkpoint(a).state_dict, load_checkpoint(b).state_dict
    if sa.keys() != sb.keys():
        raise RuntimeError(f"{a} and {b} hold different tensors")
    worst = 0.0
    for k, x in sa.items():
        y = sb[k]
        if not x.is_floating_point():
            if not torch.equal(x, y):
                raise RuntimeError(f"{k} differs between {a} and {b}")
            continue
        worst = max(worst, ((x.double() - y.double()).abs() / (ATOL + RTOL * y.double().abs())).max().item())
    return worst


def step_data(c: Check) -> str:
    from metahyper.data.sources.glyphs import build_glyphs

    build_glyphs(c.data, workers=None if not c.smoke else 1, **c.glyphs)
    from metahyper.data import open_split

    data = open_split("glyphs-a", "train", root=c.data)
    return f"glyphs-a train: {data.num_classes} classes, {data.image_size[0]} px"


def step_device(c: Check) -> str:
    from metahyper.train.distributed import resolve_device

    got = resolve_device("auto").type
    want = "cuda" if torch.cuda.is_available() else "cpu"
    if got != want or (not c.smoke and got != "cuda"):
        raise RuntimeError(f"--device auto resolved to {got}, expected {'cuda' if not c.smoke else want}")
    return f"auto -> {got}" + (f" ({torch.cuda.get_device_name()}, {c.gpus} visible)" if got == "cuda" else "")


def step_pretrain(c: Check, model: str) -> str:
    metahyper(*c.pretrain_args(model), "--out", str(c.work / "pre" / model))
    s = _summary(c.work / "pre" / model)
    return f"val acc {100 * s['best_val_acc']:.1f}%"


def meta_runs(c: Check) -> dict[str, list[str]]:
    """Name -> extra meta-train options of every meta-train run of step 4 (hyper model unless named)."""
    runs = {}
    for backend in ("func", "vmap", "higher"):
        runs[f"{backend} 2nd"] = ["--backend", backend]
        runs[f"{backend} 1st"] = ["--backend", backend, "--first-order"]
    for backend in ("func", "vmap"):
        runs[f"{backend} 2nd bf16"] = ["--backend", backend, "--autocast", "bf16"]
    runs["func 2nd ckpt 4"] = ["--backend", "func", "--inner-checkpoint", "4"]
    return runs


def step_meta(c: Check, name: str, model: str, extra: list[str]) -> str:
    out = c.work / "meta" / name.replace(" ", "-")
    metahyper(*c.meta_args(model, *extra), "--out", str(out))
    s = _summary(out)
    if s["best_val_acc"] is None or not math.isfinite(s["best_val_acc"]):
        raise RuntimeError(f"no finite validation accuracy in {out / 'summary.json'}")
    return f"best val {100 * s['best_val_acc']:.1f}%"


def step_eval(c: Check) -> str:
    out = c.work / "eval.json"
    metahyper(
        "eval",
        "--checkpoint",
        str(c.work / "meta" / "func-2nd"),
        "--dataset",
        "glyphs-b",
        "--shots",
        "1",
        "--ways",
        str(c.ways),
        "--queries",
        str(c.queries),
        "--episodes",
        str(c.eval_episodes),
        "--device",
        c.device,
        "-o",
        str(out),
        *c.common(),
    )
    r = json.loads(out.read_text())
    return f"{100 * r['mean']:.1f} +- {100 * r['ci95']:.1f}% ({c.eval_episodes} episodes)"


def step_export(c: Check) -> str:
    from metahyper.train.checkpoint import load_checkpoint

    out = c.work / "plain.pt"
    metahyper("export", "--checkpoint", str(c.work / "meta" / "func-2nd"), "-o", str(out))
    model = load_checkpoint(out).build_model()
    return f"{model.config.label()}: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M params"


def step_plots(c: Check) -> str:
    runs = [str(c.work / "meta" / "func-2nd"), str(c.work / "meta" / "plain-func-2nd")]
    metahyper("movement-plot", *runs, "-o", str(c.work / "movement.png"))
    metahyper("curves", *runs, "-o", str(c.work / "curves.png"))
    sizes = {name: (c.work / name).stat().st_size // 1024 for name in ("movement.png", "curves.png")}
    return f"movement.png {sizes['movement.png']} KB, curves.png {sizes['curves.png']} KB"


def step_torchrun(c: Check, nproc: int, stage: str) -> str:
    """torchrun ``stage`` (pretrain / meta-train) with ``nproc`` processes against the one-process run."""
    model = c.models[0]
    if stage == "pretrain":
        single, args = c.work / "pre" / model, c.pretrain_args(model)
    else:
        single, args = c.work / "meta" / "func-2nd", c.meta_args(model, "--backend", "func")
    if nproc > 1 and stage == "pretrain":
        args += ["--batch-size", str(_even_batch(c))]
        single = c.work / "torchrun" / f"{stage}-1-even"
        metahyper(*args, "--out", str(single))
    out = c.work / "torchrun" / f"{stage}-{nproc}"
    torchrun(nproc, *args, "--out", str(out))
    err = _max_state_error(out / "last.pt", single / "last.pt")
    if err > 1:
        raise RuntimeError(f"{nproc} process(es) differ from one: max |diff| = {err:.2f} x (atol + rtol |x|)")
    group = (
        "one process, no process group"
        if nproc == 1
        else f"{'nccl' if c.device == 'cuda' else 'gloo'}, {nproc} processes"
    )
    return f"{group}: max diff {err:.2g} x tolerance"


def _even_batch(c: Check) -> int:
    """A global batch size whose every batch, the last included, splits evenly over 2 processes."""
    from metahyper.data import ClassificationData, open_split

    n = len(ClassificationData(open_split("glyphs-a", "train", root=c.data), "train", 0.1, seed=0))
    return next(b for b in range(64, 1, -2) if n % b == 0)


def step_parity(c: Check) -> str:
    """float64 meta-gradients of each backend on ``c.device`` against backend func on the CPU."""
    from metahyper.data import Episode
    from metahyper.meta import MAML
    from metahyper.models import build_model, resolve_groups

    torch.manual_seed(0)
    model = build_model("hyper-wrn-10-1", variant=1, num_classes=3).double().train()
    g = torch.Generator().manual_seed(1)
    tasks = [
        Episode(
            torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64),
            torch.arange(3),
            torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
            torch.arange(3).repeat(2),
            torch.arange(3),
        )
        for _ in range(2)
    ]
    _, _, inner, outer = resolve_groups(model)

    def meta_grads(net: torch.nn.Module, backend: str, device: str) -> dict[str, torch.Tensor]:
        net.zero_grad(set_to_none=True)
        MAML(net, inner=inner, outer=outer, inner_steps=2, inner_lr=0.1, backend=backend).meta_step(
            [task.to(device) for task in tasks]
        )
        return {n: p.grad.detach().cpu() for n, p in net.named_parameters() if p.grad is not None}

    reference = meta_grads(model, "func", "cpu")
    errors = {}
    for backend in ("func", "vmap", "higher"):
        dev_model = build_model("hyper-wrn-10-1", variant=1, num_classes=3).double()
        dev_model.load_state_dict(model.state_dict())
        got = meta_grads(dev_model.to(c.device).train(), backend, c.device)
        errors[backend] = max((got[n] - r).norm().item() / max(r.norm().item(), 1e-300) for n, r in reference.items())
    bad = {b: e for b, e in errors.items() if not e <= PARITY_TOL}
    if bad:
        raise RuntimeError(f"meta-gradients off the CPU reference: {bad} (tolerance {PARITY_TOL})")
    return "max rel. error " + ", ".join(f"{b} {e:.1e}" for b, e in errors.items())


def step_bench(c: Check) -> str:
    spec_path = TOOLS / "bench_meta_gpu.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_meta_gpu", spec_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        runs = module.main(
            [
                "--out",
                str(c.work / "bench_meta_gpu.json"),
                *(["--smoke", "--reps", "1"] if c.smoke else ["--reps", "3"]),
            ]
        )
    finally:
        torch.set_num_threads(threads)
    return "fp32 GFLOP/s " + ", ".join(f"{b} {s['gflop_s']:.1f}" for b, s in runs["fp32"]["summary"].items())


def plan(c: Check, skip_bench: bool) -> list[tuple[str, Callable[[], str]]]:
    hyper, plain = c.models
    steps: list[tuple[str, Callable[[], str]]] = [
        ("data", lambda: step_data(c)),
        ("device auto", lambda: step_device(c)),
    ]
    steps += [(f"pretrain {m}", lambda m=m: step_pretrain(c, m)) for m in c.models]
    steps += [
        (f"meta-train {name}", lambda n=name, e=extra: step_meta(c, n, hyper, e))
        for name, extra in meta_runs(c).items()
    ]
    steps.append(("meta-train plain func 2nd", lambda: step_meta(c, "plain func 2nd", plain, ["--backend", "func"])))
    steps += [("eval", lambda: step_eval(c)), ("export", lambda: step_export(c)), ("plots", lambda: step_plots(c))]
    for nproc in [1] + ([2] if c.gpus > 1 else []):
        steps += [
            (f"torchrun {nproc} {s}", lambda n=nproc, s=s: step_torchrun(c, n, s)) for s in ("pretrain", "meta-train")
        ]
    steps.append(("parity float64", lambda: step_parity(c)))
    if not skip_bench:
        steps.append(("benchmark", lambda: step_bench(c)))
    return steps


def format_table(rows: list[dict]) -> str:
    width = max(len(r["step"]) for r in rows)
    lines = [f"{'step':<{width}}  status  {'s':>6}  key"]
    lines += [f"{r['step']:<{width}}  {r['status']:<6}  {r['seconds']:>6.1f}  {r['key']}" for r in rows]
    failed = sum(r["status"] != "ok" for r in rows)
    lines.append(f"{'all' if not failed else f'{failed} of {len(rows)}'} steps {'passed' if not failed else 'FAILED'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="the same steps on the CPU at tiny sizes")
    p.add_argument("--work", default=None, help="working directory (default: a fresh temporary one)")
    p.add_argument("--out", default="gpu_check.json", help="JSON of the final table")
    p.add_argument("--skip-bench", action="store_true", help="leave out the benchmark step")
    args = p.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available; run with --smoke for the CPU wiring check", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    c = Check.make(args.smoke, work)
    if c.smoke:  # the torchrun processes run on one thread; the same reduction order makes runs comparable
        torch.set_num_threads(1)
    rows = []
    for name, run in plan(c, args.skip_bench):
        t0 = time.perf_counter()
        try:
            key, status = run(), "ok"
        except Exception as err:  # a failing step is reported; the next steps still run
            traceback.print_exc()
            key, status = f"{type(err).__name__}: {err}".splitlines()[0][:160], "FAILED"
        rows.append({"step": name, "status": status, "seconds": round(time.perf_counter() - t0, 1), "key": key})
        print(f"gpu_check: {name}: {status} ({rows[-1]['seconds']} s) {key}", file=sys.stderr, flush=True)
    device = "cpu (smoke)" if c.smoke else f"{torch.cuda.get_device_name()} x {c.gpus}"
    from metahyper.io import write_json

    write_json(args.out, {"device": device, "torch": torch.__version__, "work": str(work), "rows": rows})
    print(f"\n=== gpu_check ({device}, torch {torch.__version__}, work dir {work}) ===")
    print(format_table(rows))
    return int(any(r["status"] != "ok" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
