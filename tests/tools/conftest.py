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
