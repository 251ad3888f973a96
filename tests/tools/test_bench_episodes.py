"""tools/bench_episodes.py on a tiny cache: every row, the episodes it names (no timing asserts)."""

import torch

from tests.tools.conftest import load_tool


def test_bench_episodes_tiny(monkeypatch, capsys):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the test process keeps its threads
    args = ["--classes", "6", "--per-class", "40", "--size", "8", "--episodes", "2", "--workers", "0"]
    rows = load_tool("bench_episodes").main(args)
    assert "images/CPU-s" in capsys.readouterr().out
    readers = ["HDF5 cold", "HDF5 warm", "RAM"]
    assert [(r["task"], r["reader"]) for r in rows] == [
        (t, r) for t in ("Meta-Dataset (variable)", "5-way 1-shot 15-query") for r in readers
    ]
    variable, fixed = rows[:3], rows[3:]
    assert {r["episodes"] for r in variable} == {2} and len({r["images"] for r in variable}) == 1  # same episodes
    assert all(r["episodes"] == 20 and r["images"] == 20 * 80 for r in fixed)
