"""tools/bench_batchnorm.py on tiny shapes: table and JSON with sane fields (no timing asserts)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_batchnorm_tiny(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_batchnorm", ROOT / "tools" / "bench_batchnorm.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bn.json"
    rows = bench.main(["--shapes", "4x8x5x5,2x3x4x4", "--reps", "1", "--threads", "1", "--json", str(out)])
    assert "pytorch" in capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    assert [(r["shape"], r["format"]) for r in rows] == [
        ([4, 8, 5, 5], "nchw"), ([4, 8, 5, 5], "channels_last"), ([2, 3, 4, 4], "nchw"), ([2, 3, 4, 4], "channels_last")]
    for r in rows:
        assert r["ms"]["pytorch"] > 0 and r["ms"]["ours"] > 0 and r["speedup"] > 0
