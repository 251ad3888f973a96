"""tools/bench_double_backward.py on tiny shapes: table and JSON with sane fields (no timing asserts)."""

import json

import pytest

from tests.tools.conftest import load_tool


def test_bench_double_backward_tiny(tmp_path, capsys):
    out = tmp_path / "db.json"
    rows = load_tool("bench_double_backward").main(
        ["--shapes", "4x8x5x5,2x3x4x4", "--reps", "1", "--threads", "1", "--json", str(out)]
    )
    assert "pytorch" in capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    cases = [(s, f) for s in ([4, 8, 5, 5], [2, 3, 4, 4]) for f in ("nchw", "channels_last")]
    assert [(r["layer"], r["shape"], r["format"]) for r in rows] == [
        (layer, s, f) for layer in ("batchnorm", "conv") for s, f in cases
    ]
    for r in rows:
        assert r["ms"]["pytorch"] > 0 and r["ms"]["ours"] > 0 and r["speedup"] > 0


def test_unknown_layer_is_an_error():
    with pytest.raises(SystemExit):
        load_tool("bench_double_backward").main(["--layers", "pool", "--reps", "1"])
