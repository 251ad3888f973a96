"""Every ``metahyper`` command line the README and the docs show names a command and options that
exist: a code block's lines and inline code spans, continuation lines joined, comments dropped.
(The reproduction scripts' command lines are replayed through the CLI in ``tests/tools``.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from metahyper.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "tools").rglob("*.md"))]


def shown_commands(text: str) -> list[list[str]]:
    """The argument lists after ``metahyper`` of the command lines in a Markdown page."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    blocks += re.findall(r"`(metahyper [^`]*)`", re.sub(r"```.*?```", "", text, flags=re.S))
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            found = re.search(r"(?:^|&& |\$ )metahyper (.*)", line.strip())
            if found:
                command = re.split(r" #|&&|\|", found.group(1))[0]
                commands.append(shlex.split(command))
    return [c for c in commands if c]


def unknown_names(args: list[str]) -> list[str]:
    """The command or options of ``metahyper ARGS`` that the CLI does not have."""
    command = main.get_command(click.Context(main), args[0])
    if command is None:
        return [args[0]]
    options = {"--help"}.union(*(set(p.opts) | set(p.secondary_opts) for p in command.params))
    return [a.split("=")[0] for a in args[1:] if a.startswith("--") and a.split("=")[0] not in options]


def test_the_reader_finds_commands_and_catches_a_wrong_option():
    text = "```bash\nmetahyper eval --checkpoint runs/a \\\n  --benchmark meta-dataset   # 600 episodes\n```\n"
    text += "and `metahyper meta-train --no-such-flag 3` in prose"
    commands = shown_commands(text)
    assert commands == [
        ["eval", "--checkpoint", "runs/a", "--benchmark", "meta-dataset"],
        ["meta-train", "--no-such-flag", "3"],
    ]
    assert unknown_names(commands[0]) == [] and unknown_names(commands[1]) == ["--no-such-flag"]
    assert unknown_names(["pre-train"]) == ["pre-train"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shown_commands_exist(page):
    wrong = {" ".join(args): unknown_names(args) for args in shown_commands(page.read_text())}
    assert not {line: names for line, names in wrong.items() if names}
