import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import brier_score_loss, log_loss

from kdbench.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)
from kdbench.metrics.classification import ClassifierTable
from kdbench.metrics.loyalty import js_divergence, label_loyalty, probability_loyalty
from kdbench.metrics.spec import Resampling, score
from kdbench.metrics.stats import bootstrap_mean_ci


def _probs(rng, n, k):
    x = rng.gamma(0.7, size=(n, k))
    return x / x.sum(axis=1, keepdims=True)


def _ece_loop(probs, labels, n_bins):
    """Independent ECE: explicit loop over right-closed bins (lo, hi]."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        mask = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if mask.any():
            total += mask.mean() * abs((pred[mask] == labels[mask]).mean() - conf[mask].mean())
    return total


def test_ece_matches_an_independent_loop():
    rng = np.random.default_rng(0)
    probs, labels = _probs(rng, 2000, 4), rng.integers(0, 4, 2000)
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(_ece_loop(probs, labels, 15), abs=1e-12)


def test_ece_hand_worked_example_and_edge_bins():
    # confidences 0.6 (correct), 0.6 (wrong), 0.9 (correct), 1.0 (correct), 2 bins of width .5
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    # bin (0.5, 1]: all four; acc 0.75, conf 0.775 -> 0.025
    assert expected_calibration_error(probs, labels, 2) == pytest.approx(0.025)
    # confidence exactly on an edge (0.6 with 5 bins: edges .. 0.4, 0.6, 0.8 ..) falls in the lower bin (0.4, 0.6]
    bins = reliability_bins(probs, labels, 5)
    assert bins["count"].tolist() == [0, 0, 2, 0, 2]


def test_probability_loyalty_matches_scipy_base2():
    rng = np.random.default_rng(1)
    p, q = _probs(rng, 500, 3), _probs(rng, 500, 3)
    expected = np.mean([1 - jensenshannon(a, b, base=2) for a, b in zip(p, q)])
    assert probability_loyalty(p, q) == pytest.approx(expected, abs=1e-10)
    # the classic mistakes give other numbers: natural-log JSD, or the square root taken twice
    wrong_base = np.mean([1 - jensenshannon(a, b) for a, b in zip(p, q)])
    twice = np.mean([1 - np.sqrt(jensenshannon(a, b, base=2)) for a, b in zip(p, q)])
    assert abs(probability_loyalty(p, q) - wrong_base) > 1e-3
    assert abs(probability_loyalty(p, q) - twice) > 1e-3


def test_brier_and_nll_match_scikit_learn():
    rng = np.random.default_rng(2)
    probs, labels = _probs(rng, 400, 2), rng.integers(0, 2, 400)
    # sklearn's binary Brier is on the positive class: (p1 - y)^2; ours sums both classes = 2x that
    assert brier_score(probs, labels) == pytest.approx(2 * brier_score_loss(labels, probs[:, 1]))
    assert negative_log_likelihood(probs, labels) == pytest.approx(log_loss(labels, probs, labels=[0, 1]))


def test_label_loyalty():
    t = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    s = np.array([[0.6, 0.4], [0.7, 0.3], [0.51, 0.49]])
    assert label_loyalty(t, s) == pytest.approx(2 / 3)


def test_registry_cis_contain_point_and_are_seeded():
    rng = np.random.default_rng(3)
    probs, labels = _probs(rng, 300, 2), rng.integers(0, 2, 300)
    names = ["accuracy", "ece", "brier", "nll"]
    a = score(ClassifierTable(probs, labels), names, Resampling(seed=7))
    b = score(ClassifierTable(probs, labels), names, Resampling(seed=7))
    assert a == b
    for name in names:
        low, high = a[name]["ci"]
        assert low <= a[name]["value"] <= high, name
    assert a["accuracy"]["value"] == pytest.approx(np.mean(probs.argmax(1) == labels))


prob_rows = arrays(np.float64, (20, 3), elements=st.floats(0.01, 1.0)).map(lambda x: x / x.sum(1, keepdims=True))


@settings(max_examples=50, deadline=None)
@given(prob_rows, prob_rows, st.integers(0, 2))
def test_properties(p, q, label):
    labels = np.full(len(p), label)
    assert 0.0 <= expected_calibration_error(p, labels) <= 1.0
    assert probability_loyalty(p, p) == pytest.approx(1.0)
    assert np.allclose(js_divergence(p, q), js_divergence(q, p))
    assert np.all(js_divergence(p, q) >= 0) and np.all(js_divergence(p, q) <= 1)
    values = (p.argmax(1) == labels).astype(float)
    low, high = bootstrap_mean_ci(values, 200)
    assert low <= values.mean() <= high
