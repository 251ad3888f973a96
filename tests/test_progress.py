"""Progress display: tqdm on a terminal; whole lines, never carriage returns, in a log file."""

from __future__ import annotations

import io

from tqdm import tqdm

from metahyper.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_file_gets_one_line_per_tenth():
    out = io.StringIO()
    bar = progress_bar(range(95), desc="glyphs", unit="class", file=out)
    assert isinstance(bar, LineProgress)
    assert sum(1 for _ in bar) == 95
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and len(lines) == 10
    assert lines[0].startswith("glyphs: 10/95 class (") and lines[-1].startswith("glyphs: 95/95 class (")


def test_manual_updates_postfix_and_transient_bars():
    out = io.StringIO()
    with progress_bar(total=3, desc="fc100", unit="class", file=out) as bar:
        for _ in range(3):
            bar.update(1)
        bar.set_postfix(loss="0.5")
    assert out.getvalue().splitlines()[-1].startswith("fc100: 3/3 class")
    quiet = io.StringIO()
    for _ in progress_bar(range(50), desc="epoch 1/2", leave=False, file=quiet):  # the caller logs the epoch
        pass
    for _ in progress_bar(range(50), disable=True, file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_terminal_gets_tqdm():
    bar = progress_bar(total=2, file=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
