"""What tests/unit/test_concurrency.py and tests/integration/train_and_eval/test_concurrency.py share."""
from __future__ import annotations


def _finish(procs) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs
