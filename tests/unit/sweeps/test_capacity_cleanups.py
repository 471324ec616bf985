"""Small capacity-gap cleanups, each pinned: a resampled p-value of 0 reads "p < 1/n" everywhere
(one formatter, kdbench.metrics.stats.format_p, the gate's table cells unchanged); a percentile
interval is None, not NaN, when too few resamples are finite (kdbench.metrics.stats.finite_ci, for
the seed-pooled CI and the law fit alike); recipes that use their teacher as it is (retrieval's
embedding, causal LM) take a truncated teacher (teacher.layers) and refuse one deeper than the model."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from kdbench.config import SUITES_DIR
from kdbench.metrics import spec as metric_spec
from kdbench.metrics.stats import finite_ci, format_p
from kdbench.sweeps.capacity_law import best_tier, fit_law, verdict
from tests.helpers.capacity_law import HOW, outcomes, table
from tests.helpers.cli import run_kdbench


def test_a_resampled_p_of_zero_is_a_bound():
    assert format_p(0.0, 1000, "paired bootstrap") == "p < 0.001"
    assert format_p(0.0123, 1000, "paired bootstrap") == "p = 0.012"
    assert format_p(0.00042, 200, "exact McNemar (b=1, c=9)") == "p = 0.00042"
    assert format_p(0.0, 1000, "exact McNemar (b=0, c=0)") == "p = 0"  # exact: 0 is what it computed
    # the gate's table cells, as they were
    assert [format_p(p, 1000, "paired bootstrap", name="") for p in (0.0, 0.0004, 0.0123, None)] == \
        ["< 0.001", "0.0004", "0.012", "–"]
    assert format_p(0.0, 1000, "exact McNemar", name="") == "0"


def test_run_page_does_not_say_p_is_zero():
    from kdbench.report.html import _kd_vs_baseline

    record = {"config": {"eval": {"bootstrap_samples": 500}}, "kinds": {"stsb": "regression"}}
    pair = {"pearson_difference": {"value": 0.1, "ci": [0.05, 0.15]}, "pearson_difference_p_value": {"value": 0.0}}
    assert "paired bootstrap p < 0.002 (significant at 0.05)" in _kd_vs_baseline(record, "stsb", pair)


def test_capacity_verdict_does_not_say_p_is_zero():
    nll = metric_spec.kind("classifier").metric("nll")  # paired bootstrap
    good, awful = outcomes(300, 0.95, 1), np.zeros(300, dtype=bool)
    v = best_tier(nll, {"t": table(good)}, table(awful), HOW)
    assert v["baseline_test"]["p_value"] == 0.0 and v["baseline_test"]["test"].startswith("paired bootstrap")
    said = verdict({**v, "student": "s"}, "nll", HOW.n_samples)
    assert "p < 0.001" in said and "p = 0" not in said


def test_an_interval_of_no_finite_samples_is_none():
    assert finite_ci(np.array([np.nan, np.inf, np.nan])) is None
    assert finite_ci(np.array([1.0, np.nan, 2.0, 3.0]), 0.5) == [1.5, 2.5]  # the finite ones
    # the law fit's slope over two students: resamples of one size give NaN slopes, the rest an interval
    two = [{"student": "a", "student_params": 1_000_000, "optimal_teacher_params": 4_000_000},
           {"student": "b", "student_params": 2_000_000, "optimal_teacher_params": 9_000_000}]
    fit = fit_law(two, (1, 10 ** 9))
    assert all(isinstance(v, float) for v in fit["slope_ci"]) and fit["ratio_ci"][0] <= fit["ratio_ci"][1]


@pytest.mark.parametrize("suite, depth", [("retrieval", 6), ("lm", 30)])
def test_a_truncated_teacher_deeper_than_the_model_is_refused(tmp_path, suite, depth):
    """Recipes that use their teacher as it is take teacher.layers too (its first K layers); more layers
    than the model has would add random ones: one line, exit 2, nothing written."""
    config = yaml.safe_load((SUITES_DIR / f"{suite}.yaml").read_text())
    config["name"], config["teacher"]["layers"] = f"truncated_{suite}", depth + 1
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(config))
    out = run_kdbench("train-and-eval", "--suite", path, "--reports-dir", tmp_path / "reports")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert f"teacher.layers {depth + 1}" in line and f"has {depth} layers" in line, line
    assert not (tmp_path / "reports").exists()
