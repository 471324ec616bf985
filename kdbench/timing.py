"""Wall-clock durations of a run's steps (the run record's ``durations``)."""
from __future__ import annotations

import time
from contextlib import contextmanager


@contextmanager
def timed(durations: dict, name: str):
    """``durations[name]``: the seconds the block took, rounded to 10 ms."""
    start = time.perf_counter()
    yield
    durations[name] = round(time.perf_counter() - start, 2)
