"""Small capacity-gap cleanups, each pinned: a resampled p-value of 0 reads "p < 1/n" everywhere
(one formatter, kdbench.metrics.stats.format_p, the gate's table cells unchanged)."""
from __future__ import annotations

import numpy as np

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.stats import format_p
from kdbench.sweeps.capacity_law import best_tier, verdict
from tests.test_capacity_law import HOW, outcomes, table


def test_a_resampled_p_of_zero_is_a_bound():
    assert format_p(0.0, 1000, "paired bootstrap") == "p < 0.001"
    assert format_p(0.0123, 1000, "paired bootstrap") == "p = 0.012"
    assert format_p(0.00042, 200, "exact McNemar (b=1, c=9)") == "p = 0.00042"
    assert format_p(0.0, 1000, "exact McNemar (b=0, c=0)") == "p = 0"  # exact: 0 is what it computed
    # the gate's table cells, as they were
    assert [format_p(p, 1000, "paired bootstrap", name="") for p in (0.0, 0.0004, 0.0123, None)] == \
        ["< 0.001", "0.0004", "0.012", "–"]
    assert format_p(0.0, 1000, "exact McNemar", name="") == "0"


def test_capacity_verdict_does_not_say_p_is_zero():
    nll = metric_spec.kind("classifier").metric("nll")  # paired bootstrap
    good, awful = outcomes(300, 0.95, 1), np.zeros(300, dtype=bool)
    v = best_tier(nll, {"t": table(good)}, table(awful), HOW)
    assert v["baseline_test"]["p_value"] == 0.0 and v["baseline_test"]["test"].startswith("paired bootstrap")
    said = verdict({**v, "student": "s"}, "nll", HOW.n_samples)
    assert "p < 0.001" in said and "p = 0" not in said
