"""Loading the scripts of tools/ (not a package) for their tests."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(name: str, tmp_path: Path, **env: str):
    """``bash tools/reproduce/<name>`` with ``METAHYPER`` an echo (each command printed, not run),
    ``RUNS`` under ``tmp_path`` and ``DEVICE=cpu``; ``env`` wins. The finished process."""
    import os
    import subprocess

    full = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "RUNS": str(tmp_path / "runs"),
        "METAHYPER": "echo metahyper",
        "DEVICE": "cpu",
        **env,
    }
    script = ROOT / "tools" / "reproduce" / name
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=full, timeout=60)


def script_commands(name: str, tmp_path: Path, **env: str) -> list[list[str]]:
    """The metahyper command lines (without ``metahyper``) that :func:`run_script` printed."""
    import shlex

    proc = run_script(name, tmp_path, **env)
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line)[1:] for line in proc.stdout.splitlines() if line.startswith("metahyper ")]


def flag_value(cmd: list[str], flag: str) -> str:
    """The value after ``flag`` in a command line."""
    return cmd[cmd.index(flag) + 1]


def replay_commands(commands: list[list[str]], monkeypatch, tmp_path: Path) -> dict[str, list]:
    """Invoke every ``prepare`` / ``pretrain`` / ``meta-train`` / ``eval`` command line through the
    CLI with each stage replaced by a recorder (every option parsed and validated, nothing run);
    other commands (``report``, the plots) are skipped: they read results the recorders did not
    write. The recorded configs per command (``prepare``: ``(name, options)``)."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    import metahyper.data
    import metahyper.train.benchmark
    import metahyper.train.evaluate
    import metahyper.train.meta_train
    import metahyper.train.pretrain
    from metahyper.cli import main

    seen: dict[str, list] = {"prepare": [], "pretrain": [], "meta-train": [], "eval": []}

    def record(kind: str, result):
        return lambda cfg, ctx: seen[kind].append(cfg) or result

    run = {"model": "m", "best_val_acc": None}
    table = {"model": "m", "method": "maml", "benchmark": "b", "split": "test", "sources": ["s"]}
    table.update(results=[], average=0.0, missing=[], files=[])
    one = SimpleNamespace(line=lambda: "", settings={"output": "o"})
    monkeypatch.setattr(metahyper.data, "prepare", lambda name, **kw: seen["prepare"].append((name, kw)) or [tmp_path])
    monkeypatch.setattr(metahyper.train.pretrain, "pretrain", record("pretrain", run))
    monkeypatch.setattr(metahyper.train.meta_train, "meta_train", record("meta-train", run))
    monkeypatch.setattr(metahyper.train.benchmark, "evaluate_benchmark", record("eval", table))
    monkeypatch.setattr(metahyper.train.evaluate, "evaluate", record("eval", one))
    for cmd in commands:
        if cmd[0] in seen:
            result = CliRunner().invoke(main, cmd)
            assert result.exit_code == 0, (cmd, result.output)
    return seen
