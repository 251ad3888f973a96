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
    assert set(data) == set(runs) == {"fp32", "bf16_channels_last", "steps_sweep"}
    assert {b for row in data["fp32"]["rows"] for b in row["backends"]} == {"func", "vmap", "higher", "stock_higher"}
    assert {b for row in data["bf16_channels_last"]["rows"] for b in row["backends"]} == {"func", "vmap"}
    assert data["bf16_channels_last"]["config"]["autocast"] == "bfloat16"
    assert data["bf16_channels_last"]["config"]["channels_last"] is True
    sweep = data["steps_sweep"]["rows"]
    assert {(r["steps"], r["inner_checkpoint"]) for r in sweep} == {(s, k) for s in (1, 3) for k in (0, 1, 4)}
    assert all(r["peak_mb"] is None or r["peak_mb"] > 0 for r in sweep)
    assert (tmp_path / "gpu.png").stat().st_size > 0
    assert "[fp32]" in table and "[bf16_channels_last]" in table and "[steps_sweep]" in table
    assert table.rstrip().splitlines()[-1].startswith("hyper-wrn-10-1 1-shot: peak memory 1 -> 3 steps")
