"""Statistics: bootstrap engines, paired bootstrap, exact McNemar, seed aggregation; and the classifier
metrics' vectorised replicates against the exact point formulas and the exact bootstrap."""
import re

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import softmax
from scipy.stats import binomtest

from kdbench.metrics import calibration as cal
from kdbench.metrics import stats
from kdbench.metrics.classification import TS_SPLIT_SEED, ClassifierContext, ClassifierPairTable, ClassifierTable
from kdbench.metrics.spec import Resampling, compare, kind, score


def compute(names, probs, labels, *, n_samples, seed=0, ece_bins=15):
    return score(ClassifierTable(probs, labels), names, Resampling(n_samples, 0.95, seed, {"ece_bins": ece_bins}))


def _classifier(rng, n, k=4):
    z = rng.normal(size=(n, k)) * 2
    labels = (z + rng.normal(size=z.shape) * 2).argmax(axis=1)
    return softmax(z, axis=1), labels


# --- McNemar ------------------------------------------------------------------------------------
def test_mcnemar_hand_worked_and_scipy():
    a = np.array([1, 1, 1, 1, 0, 1], dtype=bool)
    b = np.array([0, 0, 0, 1, 0, 1], dtype=bool)
    out = stats.mcnemar_exact(a, b)
    # b = 3 discordant for A, c = 0: two-sided exact p = 2·(½)³ = 0.25; OR = 3/0 = inf
    assert (out["b"], out["c"]) == (3, 0)
    assert out["p_value"] == pytest.approx(0.25)
    assert out["odds_ratio"] == float("inf")
    assert out["accuracy_difference"] == pytest.approx(3 / 6)
    rng = np.random.default_rng(0)
    a, b = rng.random(500) < 0.8, rng.random(500) < 0.7
    out = stats.mcnemar_exact(a, b)
    nb, nc = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert out["p_value"] == pytest.approx(binomtest(nb, nb + nc, 0.5).pvalue)
    assert out["odds_ratio"] == pytest.approx(nb / nc)
    low, high = out["odds_ratio_ci"]
    assert low < out["odds_ratio"] < high
    # the classic mistake: counting concordant pairs too (binomial over all N) gives another p
    assert abs(out["p_value"] - binomtest(nb, 500, 0.5).pvalue) > 1e-6
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0


# --- bootstrap ----------------------------------------------------------------------------------
def test_bootstrap_is_seeded_and_matches_the_reference_loop():
    rng = np.random.default_rng(1)
    v = rng.random(400)
    assert stats.bootstrap_mean_ci(v, seed=3) == stats.bootstrap_mean_ci(v, seed=3)
    assert stats.bootstrap_mean_ci(v, seed=3) != stats.bootstrap_mean_ci(v, seed=4)
    lo, hi = stats.bootstrap_mean_ci(v, 2000)
    ref_lo, ref_hi = stats.bootstrap_statistic_ci(np.mean, (v,), 2000, seed=9)
    assert lo == pytest.approx(ref_lo, abs=0.006) and hi == pytest.approx(ref_hi, abs=0.006)
    # and the normal-theory interval
    se = v.std() / np.sqrt(v.size)
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.006)


def test_poisson_atoms_agree_with_the_exact_bootstrap(monkeypatch):
    rng = np.random.default_rng(2)
    v = rng.exponential(size=5000)
    exact = stats.bootstrap_mean_ci(v, 1000)
    monkeypatch.setattr(stats, "EXACT_DRAWS", 0)
    atoms = stats.bootstrap_mean_ci(v, 1000, max_units=64)
    width = exact[1] - exact[0]
    assert abs(atoms[0] - exact[0]) < 0.1 * width and abs(atoms[1] - exact[1]) < 0.1 * width


def test_paired_bootstrap():
    rng = np.random.default_rng(3)
    a = (rng.random(600) < 0.8).astype(float)
    b = np.where(rng.random(600) < 0.1, 1 - a, a)  # b agrees with a on ~90% of items
    out = stats.paired_bootstrap(a, b)
    assert out["value"] == pytest.approx(a.mean() - b.mean())
    assert out["ci"][0] <= out["value"] <= out["ci"][1]
    # pairing: much narrower than treating the two samples as independent
    se_unpaired = np.sqrt(a.var() / 600 + b.var() / 600)
    assert out["ci"][1] - out["ci"][0] < 2 * 1.96 * se_unpaired
    same = stats.paired_bootstrap(a, a)
    assert same["value"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError):
        stats.paired_bootstrap(a, b[:-1])


def test_seed_aggregation():
    assert stats.aggregate_seeds([0.8, 0.82, 0.84]) == {"mean": pytest.approx(0.82), "std": pytest.approx(0.02),
                                                        "n_seeds": 3}
    runs = [{"accuracy": {"value": v, "ci": [v - 0.01, v + 0.01]}} for v in (0.8, 0.82, 0.84)]
    agg = stats.aggregate_seed_results(runs)["accuracy"]
    assert agg["value"] == pytest.approx(0.82) and agg["std"] == pytest.approx(0.02)
    half = 4.302652729911275 * 0.02 / np.sqrt(3)  # t(0.975, 2)
    assert agg["ci"] == pytest.approx([0.82 - half, 0.82 + half])
    assert stats.aggregate_seed_results(runs[:1])["accuracy"]["ci"] == [0.79, 0.81]


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(2, 60), elements=st.floats(0, 1)), st.integers(0, 10_000))
def test_a_mean_ci_contains_its_point_estimate(values, seed):
    low, high = stats.bootstrap_mean_ci(values, 300, seed=seed)
    assert low - 1e-12 <= values.mean() <= high + 1e-12


# --- the classifier metrics of the registry ----------------------------------------------------
ALL = kind("classifier").names()


def test_registry_replicates_equal_the_point_formulas_on_the_sample_itself():
    """With every example drawn exactly once, each vectorised replicate must equal the exact metric:
    this pins the engine's binning, equal-mass ranks, selective cut and harmonic-number AUC."""
    rng = np.random.default_rng(4)
    probs, labels = _classifier(rng, 997, 5)
    ctx = ClassifierContext(probs, labels, n_samples=1, seed=0, ece_bins=15)
    ctx.counts = np.ones((1, 997))
    ctx.total = np.array([997.0])
    exact = {"accuracy": cal.top_label(probs, labels)[1].mean(), "ece": cal.expected_calibration_error(probs, labels),
             "ece_equal_mass": cal.expected_calibration_error(probs, labels, 15, "mass"),
             "mce": cal.maximum_calibration_error(probs, labels), "classwise_ece": cal.classwise_ece(probs, labels),
             "brier": cal.brier_score(probs, labels), "brier_top_label": cal.top_label_brier_score(probs, labels),
             "nll": cal.negative_log_likelihood(probs, labels), "selective_accuracy_10": cal.selective_accuracy(probs, labels),
             "coverage_accuracy_auc": cal.coverage_accuracy_auc(probs, labels)}
    for name, want in exact.items():
        spec = kind("classifier").metric(name)
        assert spec.samples(ctx)[0] == pytest.approx(want, abs=1e-10), name
        assert spec.value(ctx) == pytest.approx(want, abs=1e-12), name


def test_registry_atoms_agree_with_the_exact_bootstrap(monkeypatch):
    rng = np.random.default_rng(5)
    probs, labels = _classifier(rng, 6000, 4)
    names = [n for n in ALL if n != "ts_temperature"]
    exact = compute(names, probs, labels, n_samples=600, seed=1)
    monkeypatch.setattr(stats, "EXACT_DRAWS", 0)
    atoms = compute(names, probs, labels, n_samples=600, seed=1)
    for name in names:
        (el, eh), (al, ah) = exact[name]["ci"], atoms[name]["ci"]
        width = eh - el
        assert abs(al - el) < 0.2 * width and abs(ah - eh) < 0.2 * width, (name, exact[name], atoms[name])
        assert atoms[name]["value"] == exact[name]["value"]


def test_registry_full_set_values_cis_and_names():
    rng = np.random.default_rng(6)
    probs, labels = _classifier(rng, 500, 3)
    a = compute(ALL, probs, labels, n_samples=300, seed=7)
    assert a == compute(ALL, probs, labels, n_samples=300, seed=7)
    for name, res in a.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert np.isfinite(res["value"])
        if name == "ts_temperature":
            assert res["ci"] is None
        else:
            low, high = res["ci"]
            assert np.isfinite(low) and np.isfinite(high) and low <= high
    for name in ("accuracy", "brier", "nll", "brier_top_label", "selective_accuracy_10", "coverage_accuracy_auc"):
        low, high = a[name]["ci"]
        assert low <= a[name]["value"] <= high, name
    assert a["ece"]["value"] == pytest.approx(cal.expected_calibration_error(probs, labels, 15))
    assert a["ece_equal_mass"]["value"] == pytest.approx(cal.expected_calibration_error(probs, labels, 15, "mass"))
    ts = cal.temperature_scaling_report(probs, labels, 15, 0.5, TS_SPLIT_SEED)
    assert a["ts_temperature"]["value"] == pytest.approx(ts["temperature"])
    assert a["ts_nll_after"]["value"] == pytest.approx(ts["nll_after"])
    # ece_bins reaches the metrics
    b = compute(["ece"], probs, labels, n_samples=50, ece_bins=5)
    assert b["ece"]["value"] == pytest.approx(cal.expected_calibration_error(probs, labels, 5))


def test_registry_pair_metrics():
    rng = np.random.default_rng(7)
    t, _ = _classifier(rng, 400, 6)
    s = softmax(np.log(t) + rng.normal(size=t.shape) * 0.5, axis=1)
    names = kind("classifier_pair").names()
    how = Resampling(300, 0.95, 0, {})
    out = score(ClassifierPairTable(t, s), names, how)
    from kdbench.metrics import loyalty
    assert out["probability_loyalty"]["value"] == pytest.approx(loyalty.probability_loyalty(t, s))
    assert out["acceptance_rate"]["value"] == pytest.approx(1 - out["tvd"]["value"])
    for name, res in out.items():
        assert res["ci"][0] <= res["value"] <= res["ci"][1], name
    same = score(ClassifierPairTable(t, t), names, Resampling(100, 0.95, 0, {}))
    assert same["label_loyalty"]["value"] == 1.0 and same["probability_loyalty"]["value"] == pytest.approx(1.0)


def test_builtin_task_metrics_are_registered():
    from pathlib import Path

    spec = yaml.safe_load((Path(cal.__file__).parents[1] / "tasks/builtin/sst2.yaml").read_text())
    assert set(spec["metrics"]) <= set(kind("classifier").names())
    assert set(spec["pair_metrics"]) <= set(kind("classifier_pair").names())


def test_paired_comparison_in_run_record_form():
    rng = np.random.default_rng(8)
    probs_a, labels = _classifier(rng, 300, 3)
    probs_b = softmax(np.log(probs_a) + rng.normal(size=probs_a.shape), axis=1)
    how = Resampling(300, 0.95, 0, {})
    out = compare(ClassifierTable(probs_a, labels), ClassifierTable(probs_b, labels), how)
    a_right, b_right = probs_a.argmax(1) == labels, probs_b.argmax(1) == labels
    assert out["accuracy_difference"]["value"] == pytest.approx(a_right.mean() - b_right.mean())
    assert out["mcnemar_p_value"]["value"] == pytest.approx(stats.mcnemar_exact(a_right, b_right)["p_value"])
    assert out["mcnemar_p_value"]["ci"] is None
    assert all(np.isfinite(v["value"]) for v in out.values())
    same = compare(ClassifierTable(probs_a, labels), ClassifierTable(probs_a, labels), Resampling(50, 0.95, 0, {}))
    assert "mcnemar_odds_ratio" not in same and same["mcnemar_p_value"]["value"] == 1.0
