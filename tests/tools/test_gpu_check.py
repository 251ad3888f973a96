"""tools/gpu_check.py --smoke: the GPU readiness script's steps, run on the CPU at tiny sizes
(its benchmark step is tools/bench_meta_gpu.py --smoke). No timing asserts."""

import json

import pytest
import torch

from tests.tools.conftest import load_tool

STEPS = [
    "data",
    "device auto",
    "pretrain hyper-wrn-10-1",
    "pretrain wrn-10-1",
    "meta-train func 2nd",
    "meta-train func 1st",
    "meta-train vmap 2nd",
    "meta-train vmap 1st",
    "meta-train higher 2nd",
    "meta-train higher 1st",
    "meta-train func 2nd bf16",
    "meta-train vmap 2nd bf16",
    "meta-train func 2nd ckpt 4",
    "meta-train plain func 2nd",
    "eval",
    "export",
    "plots",
    "torchrun 1 pretrain",
    "torchrun 1 meta-train",
    "parity float64",
    "benchmark",
]


def test_gpu_check_smoke(tmp_path, capsys):
    check = load_tool("gpu_check")
    threads = torch.get_num_threads()
    try:
        code = check.main(["--smoke", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "check.json")])
    finally:
        torch.set_num_threads(threads)  # the benchmark step runs on one thread
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "check.json").read_text())["rows"]
    assert [r["step"] for r in rows] == STEPS
    assert code == 0 and all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    assert out.rstrip().splitlines()[-1] == "all steps passed"
    assert "max rel. error func 0.0e+00" in next(r["key"] for r in rows if r["step"] == "parity float64")

    bench = json.loads((tmp_path / "work" / "bench_meta_gpu.json").read_text())
    assert set(bench) == {"fp32", "bf16_channels_last", "steps_sweep"}
    assert {b for row in bench["fp32"]["rows"] for b in row["backends"]} == {"func", "vmap", "higher", "stock_higher"}
    assert {b for row in bench["bf16_channels_last"]["rows"] for b in row["backends"]} == {"func", "vmap"}
    assert bench["bf16_channels_last"]["config"]["autocast"] == "bfloat16"
    sweep = bench["steps_sweep"]["rows"]
    assert {(r["steps"], r["inner_checkpoint"]) for r in sweep} == {(s, k) for s in (1, 3) for k in (0, 1, 4)}
    assert (tmp_path / "work" / "bench_meta_gpu.png").stat().st_size > 0
    assert "[fp32]" in out and "[bf16_channels_last]" in out and "[steps_sweep]" in out


def test_gpu_check_without_cuda_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    assert load_tool("gpu_check").main([]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
