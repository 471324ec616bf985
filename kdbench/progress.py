"""Progress bars and run chatter, at one verbosity per process.

On a terminal a bar redraws in place (tqdm). In a log (a CI job, a file) every redraw is a new
line, one per step, so there a bar prints one line when another 10 % is done or 30 s have passed
since its last line, whichever comes first. Library use prints nothing unless asked
(:func:`set_verbosity`); the CLI asks for ``normal``, ``--quiet`` for ``quiet`` (no bars, no
chatter: results and errors only) and ``--verbose`` for ``verbose`` (every redraw even in a log,
and the INFO logs of transformers and datasets).
"""
from __future__ import annotations

import sys

from tqdm import std
from tqdm.auto import tqdm as _auto
from tqdm.autonotebook import tqdm as _notebook

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
LEVELS = (QUIET, NORMAL, VERBOSE)
LOG_INTERVAL_S = 30.0  # a bar in a log prints at least this often...
LOG_PARTS = 10  # ...and whenever another tenth is done

_level = QUIET  # library use: silent unless asked


def set_verbosity(level: str) -> None:
    """``quiet`` (the library default), ``normal`` (the CLI's) or ``verbose``."""
    global _level
    if level not in LEVELS:
        raise ValueError(f"verbosity {level!r}: one of {', '.join(LEVELS)}")
    _level = level
    if level == VERBOSE:
        import datasets
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_info()
        datasets.logging.set_verbosity_info()


def verbosity() -> str:
    return _level


def info(message: str) -> None:
    """A line about the run (where it is written, how to resume it) on stdout, unless quiet:
    stderr is kept for errors, one line each."""
    if _level != QUIET:
        print(message, flush=True)


class LogBar(std.tqdm):
    """A bar for a log, not a terminal: each redraw is one line, made when another
    1/``LOG_PARTS`` of the total is done or ``LOG_INTERVAL_S`` have passed since the last one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "mininterval": LOG_INTERVAL_S, "miniters": 1})

    def _step(self, n: float) -> int:
        return int(n * LOG_PARTS // self.total) if self.total else 0  # integer arithmetic: 96 of 96 is 10/10

    def update(self, n=1):
        if self.disable:
            return None
        step_before = self._step(self.last_print_n)
        printed = super().update(n)  # prints when LOG_INTERVAL_S have passed
        if not printed and self._step(self.n) > step_before:
            self.refresh()
            self.last_print_n, self.last_print_t = self.n, self._time()
            return True
        return printed

    def __iter__(self):
        # tqdm's own loop inlines its timing rule; ours goes through update()
        if self.disable:
            yield from self.iterable
            return
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def display(self, msg=None, pos=None):
        if msg == "":  # tqdm clearing a finished bar: a log has nothing to clear
            return False
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()
        return True


def bar(iterable=None, *, desc: str | None = None, total: float | None = None, unit: str = "it",
        disable: bool = False, file=None, **kwargs):
    """A progress bar as the process's verbosity wants it: none when quiet (or ``disable``), tqdm's
    on a terminal, in a notebook or when verbose, else a :class:`LogBar`. Bars vanish when done."""
    file = file if file is not None else sys.stderr
    options = dict(desc=desc, total=total, unit=unit, leave=False, file=file, **kwargs)
    if disable or _level == QUIET:
        return std.tqdm(iterable, disable=True, **options)
    interactive = getattr(file, "isatty", lambda: False)() or _notebook is not std.tqdm  # a notebook's widget
    if interactive or _level == VERBOSE:
        return _auto(iterable, **options)
    return LogBar(iterable, **options)
