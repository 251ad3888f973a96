"""tools/bench_algorithms.py --quick: one row per member of the MAML family, ratios to MAML (no
timing asserts)."""

import json

from tests.tools.conftest import load_tool


def test_bench_algorithms_quick(tmp_path, capsys):
    bench = load_tool("bench_algorithms")
    out = tmp_path / "algorithms.json"
    result = bench.main(["--quick", "--json", str(out)])
    names = [r["variant"] for r in result["rows"]]
    assert names[0] == "maml" and {"fomaml", "anil", "boil", "meta-sgd", "zero head", "lslr", "msl"} <= set(names)
    assert result["rows"][0]["time_ratio"] == 1.0 and all(r["ms"] > 0 for r in result["rows"])
    assert json.loads(out.read_text())["rows"][1]["variant"] == names[1]
    assert "x maml" in capsys.readouterr().out
