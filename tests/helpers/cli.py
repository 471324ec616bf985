"""Running the real ``kdbench`` CLI from tests."""
from __future__ import annotations

import os
import subprocess
import sys

# a small SST-2 slice: minutes on 2 cores, large enough for the quickstart's claims to show
SMALL = ["--train-rows", "1000", "--eval-rows", "300"]
# a tiny GLUE slice: one epoch of the teacher and the student, seconds per task
TINY = ["--train-rows", "160", "--eval-rows", "96", "--epochs", "1", "--set", "teacher.finetune.epochs=1",
        "--set", "eval.efficiency=false", "--set", "eval.bootstrap_samples=200"]


def run_kdbench(*args, env=None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kdbench", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=1800)
