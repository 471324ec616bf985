"""Progress bars in a log: a line per 10 % or 30 s, not one per step; none in library use unless
asked; the CLI's --quiet / --verbose."""
from __future__ import annotations

import io

import pytest

from kdbench import progress


class Log(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def level():
    before = progress.verbosity()
    yield progress.set_verbosity
    progress.set_verbosity(before)


def test_library_use_prints_no_bar_unless_asked(level):
    level(progress.QUIET)
    out = Log()
    for _ in progress.bar(range(50), desc="quiet", file=out):
        pass
    assert out.getvalue() == ""


def test_in_a_log_a_bar_prints_a_line_per_tenth_not_per_step(level):
    level(progress.NORMAL)
    out = Log()
    for _ in progress.bar(range(96), desc="train", file=out):
        pass
    lines = out.getvalue().splitlines()  # splitlines also splits on "\r", as a CI log shows it
    assert len(lines) == 11, lines  # 0 %, 10 %, ..., 100 %
    assert lines[0].startswith("train:   0%") and lines[-1].startswith("train: 100%")
    assert "\r" not in out.getvalue()


def test_in_a_log_a_slow_bar_prints_every_30_seconds(level):
    level(progress.NORMAL)
    out, clock = Log(), [0.0]
    bar = progress.bar(total=1000, desc="slow", file=out)
    bar._time = lambda: clock[0]
    bar.last_print_t = bar.start_t = 0.0
    for _ in range(50):  # 5 % of the total, one step every 2 s: 100 s
        clock[0] += 2.0
        bar.update()
    bar.close()
    assert len(out.getvalue().splitlines()) == 1 + 3  # the start, then at 30, 60 and 90 s


def test_on_a_terminal_and_when_verbose_tqdm_redraws_as_usual(level):
    level(progress.NORMAL)
    term = Terminal()
    for _ in progress.bar(range(200), desc="live", file=term, mininterval=0):
        pass
    assert term.getvalue().count("\r") > 50
    level(progress.VERBOSE)
    log = Log()
    for _ in progress.bar(range(200), desc="verbose", file=log, mininterval=0):
        pass
    assert log.getvalue().count("\r") > 50
