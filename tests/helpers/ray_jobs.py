"""A point that kills its own Ray worker process the first time it runs (the retry test)."""
from __future__ import annotations

import os
from pathlib import Path


def crash_once(marker: str, fn, args):
    """First call: write this process's id to ``marker`` and die at once, as a killed worker does
    (no exception, no cleanup); later calls run ``fn(*args)``."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return fn(*args)
