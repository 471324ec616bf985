"""CI's regression gate: the quickstart suite on a small slice (the small_runs fixture's first run,
already paid for by the other real-run tests) against the committed baselines/quickstart-small.json.
A change that moves these numbers fails here until the baseline is re-made in the same commit
(`make baselines`); the gate names a trainer change when that is the cause."""
from __future__ import annotations

import pytest

from tests.helpers import ROOT
from tests.helpers.cli import run_kdbench

pytestmark = pytest.mark.slow

BASELINE = ROOT / "baselines" / "quickstart-small.json"


def test_the_small_quickstart_run_passes_the_committed_baseline(small_runs, tmp_path):
    md = tmp_path / "gate.md"
    proc = run_kdbench("gate", "--baseline", BASELINE, "--candidate", small_runs["first"] / "report.json",
                       "--markdown", md)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a trainer changed since the baseline was promoted is a note, not a failure (re-promote: make baselines)
    assert "✅ PASS" in md.read_text()
