"""Progress bars in a log: a line per 10 % or 30 s, not one per step; none in library use unless
asked; the CLI's --quiet / --verbose."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers.cli import run_kdbench


def test_quiet_and_verbose_flags(tmp_path):
    assert run_kdbench("--quiet", "suites").returncode == 0
    both = run_kdbench("--quiet", "--verbose", "suites")
    assert both.returncode == 2 and "--quiet and --verbose: choose one" in both.stderr


def test_importing_kdbench_as_a_library_prints_nothing():
    code = ("import kdbench, kdbench.pipeline, kdbench.progress as p; assert p.verbosity() == 'quiet'; "
            "kdbench.set_verbosity('normal'); assert p.verbosity() == 'normal'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr
