"""tools/bench_meta_gpu.py --smoke: the CUDA script's wiring, run on the CPU at tiny sizes (no timing asserts)."""

import json

import torch

from tests.tools.conftest import load_tool


def test_bench_meta_gpu_smoke(tmp_path, capsys):
    gpu = load_tool("bench_meta_gpu")
    out = tmp_path / "gpu.json"
    threads = torch.get_num_threads()
    try:
        runs = gpu.main(["--smoke", "--reps", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the smoke run uses one thread
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == set(runs) == {"fp32", "bf16_channels_last"}
    assert {b for row in data["fp32"]["rows"] for b in row["backends"]} == {"func", "vmap", "higher", "stock_higher"}
    assert {b for row in data["bf16_channels_last"]["rows"] for b in row["backends"]} == {"func", "vmap"}
    assert data["bf16_channels_last"]["config"]["autocast"] == "bfloat16"
    assert data["bf16_channels_last"]["config"]["channels_last"] is True
    assert "[fp32]" in table and "[bf16_channels_last]" in table and table.rstrip().splitlines()[-1].startswith("all ")
