"""Waiting for the real processes the concurrency tests start."""
from __future__ import annotations


def _finish(procs) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs
