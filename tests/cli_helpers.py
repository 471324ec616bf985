"""Running the real ``kdbench`` CLI from tests."""
from __future__ import annotations

import os
import subprocess
import sys

# a small SST-2 slice: minutes on 2 cores, large enough for the quickstart's claims to show
SMALL = ["--train-rows", "1000", "--eval-rows", "300"]


def run_kdbench(*args, env=None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kdbench", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=1800)
