"""Calibration metrics: hand-worked examples, cross-checks, and the classic mistakes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import brier_score_loss, log_loss

from kdbench.metrics import calibration as cal


def _probs(rng, n, k):
    x = rng.gamma(0.7, size=(n, k))
    return x / x.sum(axis=1, keepdims=True)


# four examples with top-label confidences 0.6 (right), 0.7 (wrong), 0.8 (right), 0.9 (right)
P4 = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
Y4 = np.array([0, 0, 0, 1])


def test_equal_mass_ece_hand_worked():
    # 2 equal-mass bins: {0.6, 0.7}: acc 0.5, conf 0.65; {0.8, 0.9}: acc 1, conf 0.85 -> 0.15
    assert cal.expected_calibration_error(P4, Y4, 2, strategy="mass") == pytest.approx(0.15)
    # 2 equal-width bins put all four in (0.5, 1]: acc 0.75 = conf 0.75 -> 0
    assert cal.expected_calibration_error(P4, Y4, 2) == pytest.approx(0.0)
    bins = cal.reliability_bins(P4, Y4, 2, strategy="mass")
    assert bins["count"].tolist() == [2, 2]
    assert bins["edges"].tolist() == pytest.approx([0.6, 0.8, 1.0])


def test_equal_mass_bins_are_balanced():
    rng = np.random.default_rng(0)
    probs, labels = _probs(rng, 1003, 3), rng.integers(0, 3, 1003)
    counts = cal.reliability_bins(probs, labels, 15, strategy="mass")["count"]
    assert counts.sum() == 1003 and counts.max() - counts.min() <= 1


def test_mce_hand_worked():
    # 10 bins: gaps |1-.6| = .4, |0-.7| = .7, |1-.8| = .2, |1-.9| = .1
    assert cal.maximum_calibration_error(P4, Y4, 10) == pytest.approx(0.7)


def test_off_by_one_bin_edges():
    # 0.6 (right) sits on an edge of 5 bins: right-closed bins put it in (0.4, 0.6], apart from 0.65 (wrong)
    probs = np.array([[0.6, 0.4], [0.65, 0.35]])
    labels = np.array([0, 1])
    assert cal.expected_calibration_error(probs, labels, 5) == pytest.approx(0.5 * 0.4 + 0.5 * 0.65)
    # left-closed bins [0.6, 0.8) would merge them: |0.5 - 0.625| = 0.125
    assert abs(cal.expected_calibration_error(probs, labels, 5) - 0.125) > 0.1
    # confidence 1.0 lands in the last bin, 0.0 in the first
    assert cal.equal_width_bin(np.array([0.0, 1.0]), 15).tolist() == [0, 14]


def test_classwise_ece_hand_worked():
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    labels = np.array([0, 0])
    # class 0: |1-.8| + |1-.3| = .9; class 1: |0-.2| + |0-.7| = .9; / (K·N = 4)
    assert cal.classwise_ece(probs, labels, 2) == pytest.approx(1.8 / 4)


def test_classwise_ece_matches_a_loop():
    rng = np.random.default_rng(1)
    probs, labels = _probs(rng, 500, 4), rng.integers(0, 4, 500)
    total = 0.0
    for k in range(4):
        for b in range(15):
            lo, hi = b / 15, (b + 1) / 15
            m = (probs[:, k] > lo) & (probs[:, k] <= hi) if b else (probs[:, k] <= hi)
            if m.any():
                total += m.mean() * abs((labels[m] == k).mean() - probs[m, k].mean())
    assert cal.classwise_ece(probs, labels, 15) == pytest.approx(total / 4, abs=1e-12)


def test_top_label_brier_hand_worked_and_sklearn():
    probs = np.array([[0.8, 0.2], [0.6, 0.4]])
    labels = np.array([0, 1])
    assert cal.top_label_brier_score(probs, labels) == pytest.approx((0.04 + 0.36) / 2)
    rng = np.random.default_rng(2)
    probs, labels = _probs(rng, 300, 5), rng.integers(0, 5, 300)
    conf, correct = cal.top_label(probs, labels)
    assert cal.top_label_brier_score(probs, labels) == pytest.approx(brier_score_loss(correct, conf))
    # the two Brier scores are different numbers
    assert abs(cal.top_label_brier_score(probs, labels) - cal.brier_score(probs, labels)) > 1e-3


def test_multiclass_brier_and_nll_match_scikit_learn():
    rng = np.random.default_rng(3)
    probs, labels = _probs(rng, 400, 4), rng.integers(0, 4, 400)
    onehot = np.eye(4)[labels]
    assert cal.brier_score(probs, labels) == pytest.approx(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
    assert cal.negative_log_likelihood(probs, labels) == pytest.approx(log_loss(labels, probs, labels=[0, 1, 2, 3]))


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(20000, 5)) * 3
    labels = np.array([rng.choice(5, p=p) for p in softmax(z, axis=1)])
    overconfident = softmax(2.0 * z, axis=1)  # logits sharpened by 2 -> T ≈ 2 undoes it
    t = cal.fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.0, rel=0.05)
    ref = minimize_scalar(
        lambda lt: -np.mean(log_softmax(np.log(overconfident) / np.exp(lt), axis=1)[np.arange(20000), labels]),
        bounds=(-3, 3), method="bounded", options={"xatol": 1e-10})
    assert t == pytest.approx(np.exp(ref.x), rel=1e-5)
    report = cal.temperature_scaling_report(overconfident, labels, 15)
    assert report["ece_after"] < report["ece_before"] and report["nll_after"] < report["nll_before"]


def test_temperature_scaling_classic_mistakes():
    rng = np.random.default_rng(5)
    probs = _probs(rng, 6, 3)
    scaled = cal.apply_temperature(probs, 2.0)
    assert np.allclose(scaled.sum(axis=1), 1.0)  # softmax over classes, not over examples
    assert np.allclose(scaled, softmax(np.log(probs) / 2.0, axis=1))
    assert not np.allclose(scaled, softmax(np.log(probs) / 2.0, axis=0))
    # T divides the logits, not the probabilities
    assert not np.allclose(scaled, softmax(probs / 2.0, axis=1))
    # T = 1 is the identity
    assert np.allclose(cal.apply_temperature(probs, 1.0), probs)


def test_temperature_split_is_disjoint_and_seeded():
    fit, ev = cal.temperature_split(101, 0.5, seed=3)
    assert len(fit) == 50 and len(ev) == 51 and not set(fit) & set(ev)
    assert np.array_equal(fit, cal.temperature_split(101, 0.5, seed=3)[0])


def test_selective_accuracy_and_coverage_auc_hand_worked():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong), … 20 examples: top 10% = 2
    conf = np.linspace(0.95, 0.55, 20)
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.array([0, 1] * 10)  # right, wrong, right, wrong …
    assert cal.selective_accuracy(probs, labels, 0.1) == pytest.approx(0.5)
    assert cal.selective_accuracy(probs, labels, 0.05) == pytest.approx(1.0)
    # two examples: most confident right, other wrong: (acc_1 + acc_2)/2 = (1 + 0.5)/2
    two = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert cal.coverage_accuracy_auc(two, np.array([0, 1])) == pytest.approx(0.75)
    assert cal.coverage_accuracy_auc(two, np.array([1, 0])) == pytest.approx(0.25)


def test_coverage_auc_is_one_minus_aurc():
    rng = np.random.default_rng(6)
    probs, labels = _probs(rng, 300, 3), rng.integers(0, 3, 300)
    conf, correct = cal.top_label(probs, labels)
    order = np.argsort(-conf)
    risk = [1 - correct[order[:k]].mean() for k in range(1, 301)]
    assert cal.coverage_accuracy_auc(probs, labels) == pytest.approx(1 - np.mean(risk))


prob_rows = arrays(np.float64, (12, 3), elements=st.floats(0.0, 1.0)).filter(
    lambda x: np.all(x.sum(1) > 0)).map(lambda x: x / x.sum(1, keepdims=True))


@settings(max_examples=40, deadline=None)
@given(prob_rows, arrays(np.int64, 12, elements=st.integers(0, 2)), st.integers(1, 20))
def test_calibration_errors_are_in_unit_interval(p, labels, n_bins):
    for value in (
        cal.expected_calibration_error(p, labels, n_bins),
        cal.expected_calibration_error(p, labels, n_bins, strategy="mass"),
        cal.maximum_calibration_error(p, labels, n_bins),
        cal.classwise_ece(p, labels, n_bins),
        cal.top_label_brier_score(p, labels),
        cal.selective_accuracy(p, labels),
        cal.coverage_accuracy_auc(p, labels),
    ):
        assert -1e-12 <= value <= 1 + 1e-12
    assert 0 <= cal.brier_score(p, labels) <= 2 + 1e-12
    assert cal.expected_calibration_error(p, labels, n_bins) <= cal.maximum_calibration_error(p, labels, n_bins) + 1e-12
