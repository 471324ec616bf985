"""What a capacity-gap grid says, on constructed per-example outcomes (fast): the seed-pooled
bootstrap (kdbench.metrics.pooled) keeps its width when seeds tie, the best tier
(kdbench.sweeps.capacity_law.best_tier) holds tied teachers and drops a significantly worse one, a
tie at chance is "no teacher helps", and the law fit recovers a known teacher/student ratio."""
from __future__ import annotations

import numpy as np
import pytest

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.pooled import seed_pooled_ci
from kdbench.metrics.stats import aggregate_seed_results, bootstrap_mean_ci
from kdbench.sweeps.capacity_law import best_tier, fit_law
from tests.helpers.capacity_law import ACCURACY, HOW, outcomes, table


def test_seed_pooled_interval_does_not_collapse_when_seeds_tie():
    right = outcomes(400, 0.7, 1)
    tied = [table(right), table(right), table(right)]  # three seeds, the same outcomes
    # the t interval over seeds is a point: every seed scores the same
    per_seed = [{"accuracy": {"value": float(right.mean()), "ci": None}}] * 3
    t = aggregate_seed_results(per_seed)["accuracy"]["ci"]
    assert t[0] == t[1]
    low, high = seed_pooled_ci(ACCURACY, tied, HOW)
    one = bootstrap_mean_ci(right.astype(float), 1000)
    assert low < right.mean() < high
    assert high - low == pytest.approx(one[1] - one[0], rel=0.1)  # the slice's spread, as for one seed
    # seeds that disagree widen it: the seed stage adds their spread
    apart = [table(outcomes(400, r, i)) for i, r in enumerate((0.55, 0.7, 0.85))]
    low2, high2 = seed_pooled_ci(ACCURACY, apart, HOW)
    assert high2 - low2 > 1.5 * (high - low)
    assert seed_pooled_ci(ACCURACY, tied, HOW) == [low, high]  # seeded: the same interval again


def test_best_tier_holds_a_tie_and_drops_a_worse_teacher():
    good = outcomes(600, 0.8, 2)
    worse = good.copy()
    worse[np.flatnonzero(good)[:120]] = False  # wrong on 120 more examples
    baseline = outcomes(600, 0.5, 3)
    pooled = {"small": table(worse), "mid": table(good), "large": table(good)}  # mid and large tie exactly
    v = best_tier(ACCURACY, pooled, table(baseline), HOW)
    assert v["top_teacher"] == "mid" and v["best_teacher"] == "mid"  # of equals, the first in order
    assert v["best_tier"] == ["mid", "large"]
    small, large = v["comparisons"]
    assert small["teacher"] == "small" and not small["in_tier"] and small["p_holm"] < 0.05
    assert small["test"].startswith("exact McNemar") and small["p_holm"] >= small["p_value"]
    assert large == {**large, "delta": 0.0, "p_value": 1.0, "in_tier": True}
    assert v["no_teacher_helps"] is False and v["baseline_test"]["delta"] > 0


def test_a_tie_at_chance_is_no_teacher_helps():
    chance = np.arange(400) % 2 == 0  # every model right on the same half: the majority class
    pooled = {"a": table(chance), "b": table(chance), "c": table(chance)}
    v = best_tier(ACCURACY, pooled, table(chance), HOW)
    assert v["best_teacher"] is None and v["no_teacher_helps"] is True
    assert v["best_tier"] == ["a", "b", "c"]
    # without a baseline, a teacher cannot be shown to help: the top one stays, untested
    untested = best_tier(ACCURACY, pooled, None, HOW)
    assert untested["best_teacher"] == "a" and untested["no_teacher_helps"] is None


def test_lower_is_better_picks_the_lowest():
    nll = metric_spec.kind("classifier").metric("nll")
    assert nll.higher_is_better is False
    good, bad = outcomes(300, 0.9, 4), outcomes(300, 0.6, 5)
    v = best_tier(nll, {"bad": table(bad), "good": table(good)}, None, HOW)
    assert v["top_teacher"] == "good" and v["best_tier"] == ["good"]


def test_fit_recovers_a_known_ratio():
    rng = np.random.default_rng(0)
    sizes = [2e6, 4e6, 8e6, 16e6, 32e6]
    students = [{"student": f"s{i}", "student_params": int(s), "optimal_teacher_params": int(5 * s * rng.lognormal(0, 0.05))}
                for i, s in enumerate(sizes)]
    fit = fit_law(students, (1_000_000, 1_000_000_000))
    assert fit["enough_data"] and fit["limits"] == []
    assert fit["ratio"] == pytest.approx(5, rel=0.05) and fit["ratio_ci"][0] < 5 < fit["ratio_ci"][1]
    assert fit["slope"] == pytest.approx(1, abs=0.05) and fit["slope_ci"][0] < 1 < fit["slope_ci"][1]
    assert fit["ratio_at_mean_student"] == pytest.approx(5, rel=0.05)
    # a steeper law (T* ∝ S^1.5) is read as a slope, not as a constant ratio
    steep = [{**s, "optimal_teacher_params": int(3 * s["student_params"] ** 1.5)} for s in students]
    assert fit_law(steep, (1, 10 ** 12))["slope"] == pytest.approx(1.5, abs=1e-6)


def test_fit_says_when_the_data_are_too_small():
    rows = [{"student": "a", "student_params": 1_000_000, "optimal_teacher_params": 4_000_000},
            {"student": "b", "student_params": 2_000_000, "optimal_teacher_params": 9_000_000},
            {"student": "c", "student_params": 4_000_000, "optimal_teacher_params": None}]
    fit = fit_law(rows, (3_000_000, 9_000_000))
    assert not fit["enough_data"]
    assert fit["limits"] == ["2 student size(s) with an optimum; a law needs at least 3",
                             "student b's optimum is the largest teacher: the true optimum may lie beyond the range",
                             "no teacher helps student c"]
    assert "slope" in fit and len(fit["points"]) == 2  # still fitted, and said to be inconclusive
    nothing = fit_law([{**r, "optimal_teacher_params": None} for r in rows], (3_000_000, 9_000_000))
    assert nothing["points"] == [] and "ratio" not in nothing and not nothing["enough_data"]
