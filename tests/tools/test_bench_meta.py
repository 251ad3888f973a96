"""tools/bench_meta.py --quick: produces the table and JSON with sane fields (no timing asserts)."""

import json

import pytest
import torch
import torch.nn.functional as F

from tests.tools.conftest import load_tool


def test_bench_meta_quick(tmp_path, capsys):
    bench = load_tool("bench_meta")
    out = tmp_path / "bench.json"
    assert bench.parse_args(["--quick"]).backends == ["func", "stock_higher"]
    assert bench.parse_args(["--quick", "--with-higher", "--no-stock"]).backends == ["func", "higher"]
    assert bench.backend_class("vmap").name == "vmap" and bench.backend_class("func-nchw") is bench.FuncNCHW
    names = ["func", *bench.VARIANTS, "vmap"]
    result = bench.main(["--quick", "--backends", ",".join(names), "--json", str(out)])
    table = capsys.readouterr().out
    assert "func" in table and "vmap" in table and "stock_higher" in table and "GFLOP/s" in table
    data = json.loads(out.read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"]))
    machine = data["machine"]
    assert machine["conv_gflop_s"] > 0 and machine["matmul_gflop_s"] > 0
    assert {row["order"] for row in data["rows"]} == {1, 2}
    for row in data["rows"]:
        assert row["necessary_gflop"] > 0 and row["ratio"] > 0 and row["conv_gflop_s"] > 0
        for name in names:
            r = row["backends"][name]
            assert r["ms"] > 0 and r["tasks_s"] > 0 and r["gflop"] > 0 and r["gflop_s"] > 0 and r["frac_conv"] > 0
            assert len(r["ms_all"]) == data["config"]["reps"]
            assert r["peak_mb"] is None or r["peak_mb"] >= 0
        # the default backend does no more than the necessary work; stock higher does more
        assert abs(row["backends"]["func"]["flop_over_necessary"] - 1) < 0.02
        for name in ("func-nchw", "func-torch-bn", "func-torch-conv", "plain"):
            assert abs(row["backends"][name]["flop_over_necessary"] - 1) < 0.02, name
        assert row["backends"]["stock_higher"]["gflop"] > row["backends"]["func"]["gflop"]
        assert row["backends"]["vmap"]["flop_over_necessary"] >= 0.98
    for name, s in data["summary"].items():  # over all rows: total work / time, and / the reference's work
        rows = [row["backends"][name] for row in data["rows"]]
        assert s["rows"] == len(rows) and s["gflop"] == sum(r["gflop"] for r in rows)
        assert s["gflop_s"] == s["gflop"] / (sum(r["ms"] for r in rows) / 1e3)
        assert min(r["frac_conv"] for r in rows) <= s["frac_conv"] <= max(r["frac_conv"] for r in rows)
    assert f"all {len(data['rows'])} rows, func:" in table


def test_bench_meta_conv_calls(capsys):
    """--conv-calls: the time inside convolution calls of one more meta-step, and the conv% those
    calls alone give (the row's ceiling), for every backend."""
    bench = load_tool("bench_meta")
    result = bench.main(["--quick", "--backends", "func,stock_higher", "--conv-calls"])
    table = capsys.readouterr().out
    for row in result["rows"]:
        for name in ("func", "stock_higher"):
            r = row["backends"][name]
            assert r["conv_call_ms"] > 0
            assert r["conv_call_share"] == r["conv_call_ms"] / r["ms"]
            assert r["conv_call_frac_conv"] == r["gflop"] / (r["conv_call_ms"] / 1e3) / row["conv_gflop_s"]
    assert "time inside convolution calls" in table
    assert table.count("of the meta-step") == 2 * len(result["rows"])


def test_conv_call_timer_times_convolutions_only():
    bench = load_tool("bench_meta")
    x, w = torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    with bench.ConvCallTimer() as timer:
        (x * 2).sum()
    assert timer.seconds == 0.0
    with bench.ConvCallTimer() as timer:
        F.conv2d(x, w, padding=1).sum().backward()
    assert timer.seconds > 0


def test_bench_meta_steps_sweep(tmp_path, capsys):
    """--steps-sweep: peak memory and time of one second-order meta-step per (steps, checkpoint
    interval), JSON, table and PNG (no timing or memory asserts)."""
    bench = load_tool("bench_meta")
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    result = bench.main(
        [
            "--quick",
            "--steps-sweep",
            "1,3",
            "--inner-checkpoint",
            "1,0",
            "--variant",
            "1",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"]))
    assert data["config"]["inner_checkpoint"] == [0, 1] and data["config"]["steps_sweep"] == [1, 3]
    assert sorted((r["steps"], r["inner_checkpoint"]) for r in data["rows"]) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    for r in data["rows"]:
        assert r["model"] == "hyper-wrn-10-1" and r["variant"] == 1 and r["ms"] > 0 and len(r["ms_all"]) == 1
        assert r["peak_mb"] is None or r["peak_mb"] >= 0
    (summary,) = data["summary"]
    assert summary["steps"] == [1, 3] and set(summary["memory_growth"]) == {"0", "1"}
    assert set(summary["time_ratio"]) == {"1", "3"} and all(v["1"] > 0 for v in summary["time_ratio"].values())
    assert "peak MB ck=0" in table and "time ck=1/0" in table and "peak memory 1 -> 3 steps" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        bench.parse_args(["--steps-sweep", "0,2"])
