"""capacity-gap points as Ray tasks on a real local Ray cluster (2 CPUs, no dashboard), on the tiny
real sweep of test_capacity_gap.py (two truncations of all-MiniLM-L6-v2, a 1-layer student, two
seeds): the curve equals the local executor's, a worker killed mid-point is retried and the curve is
complete, and a resumed sweep skips its finished points; a suite's task × seed points through Ray
make the record one process makes. Skipped where Ray is not installed (the bad-input tests run)."""
from __future__ import annotations

import sys

import pytest


def test_ray_executor_without_ray_is_one_line(monkeypatch):
    from kdbench.errors import KdbenchError
    from kdbench.sweeps import executors

    monkeypatch.setitem(sys.modules, "ray", None)  # as where the extra is not installed
    with pytest.raises(KdbenchError, match=r"--executor ray needs Ray: pip install 'kdbench\[ray\]'"):
        executors.make("ray")
