"""Loyalty and agreement metrics: hand-worked examples, scipy cross-checks, classic mistakes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy

from kdbench.metrics import loyalty as loy


def _probs(rng, n, k):
    x = rng.gamma(0.7, size=(n, k))
    return x / x.sum(axis=1, keepdims=True)


def test_jsd_matches_scipy_base2_and_hand_example():
    rng = np.random.default_rng(0)
    p, q = _probs(rng, 200, 4), _probs(rng, 200, 4)
    assert np.allclose(loy.js_divergence(p, q), jensenshannon(p, q, base=2, axis=1) ** 2)
    # disjoint distributions: JSD₂ = 1 exactly; probability loyalty 0
    assert loy.js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))[0] == pytest.approx(1.0)
    assert loy.probability_loyalty(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(0.0)
    # [1, 0] vs [½, ½]: m = [¾, ¼]; JSD = ½ log₂(4/3) + ½(½ log₂(2/3) + ½ log₂ 2)
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5 * np.log2(2))
    assert loy.js_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))[0] == pytest.approx(expected)


def test_probability_loyalty_classic_mistakes():
    rng = np.random.default_rng(1)
    p, q = _probs(rng, 300, 3), _probs(rng, 300, 3)
    right = np.mean(1 - jensenshannon(p, q, base=2, axis=1))
    assert loy.probability_loyalty(p, q) == pytest.approx(right, abs=1e-10)
    wrong_base = np.mean(1 - jensenshannon(p, q, axis=1))  # natural-log JSD
    sqrt_twice = np.mean(1 - np.sqrt(jensenshannon(p, q, base=2, axis=1)))
    no_sqrt = np.mean(1 - jensenshannon(p, q, base=2, axis=1) ** 2)
    for wrong in (wrong_base, sqrt_twice, no_sqrt):
        assert abs(loy.probability_loyalty(p, q) - wrong) > 1e-3


def test_regression_loyalty_hand_worked_and_mistakes():
    t, s = np.array([1.0, 3.0]), np.array([1.0, 4.0])
    expected = (1 + (1 - np.sqrt(1 / 5))) / 2
    assert loy.regression_loyalty(t, s, 5.0) == pytest.approx(expected)
    assert abs(loy.regression_loyalty(t, s, 5.0) - (1 + (1 - (1 / 5) ** 0.25)) / 2) > 1e-3  # sqrt twice
    assert abs(loy.regression_loyalty(t, s, 5.0) - (1 + (1 - 1 / 5)) / 2) > 1e-3  # no sqrt
    assert loy.regression_loyalty(np.array([0.0]), np.array([9.0]), 5.0) == 0.0  # clipped at R
    with pytest.raises(ValueError):
        loy.regression_loyalty(t, s, 0.0)


def test_label_loyalty_and_top_k_overlap_hand_worked():
    t = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    s = np.array([[0.3, 0.5, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]])
    assert loy.label_loyalty(t, s) == 0.0
    # top-2: {0,1} vs {1,0} -> 1; {3,2} vs {0,1} -> 0
    assert loy.top_k_overlap(t, s, 2) == pytest.approx(0.5)
    assert loy.top_k_overlap(t, s, 10) == 1.0  # k capped at K


def test_kl_tvd_and_acceptance_rate_against_scipy_and_by_hand():
    rng = np.random.default_rng(2)
    p, q = _probs(rng, 50, 6), _probs(rng, 50, 6)
    lp, lq = np.log(p), np.log(q)
    assert np.allclose(loy.kl_divergence(lp, lq), entropy(p, q, axis=1))
    assert np.allclose(loy.kl_divergence(lq, lp), entropy(q, p, axis=1))
    assert np.allclose(loy.acceptance_rate_per_token(p, q), 1 - loy.total_variation(p, q))
    # p = [.5, .5], q = [.9, .1]: Σ min = .5 + .1 = .6, TVD = .4
    assert loy.acceptance_rate_per_token(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(0.6)


def test_expected_tokens_per_call():
    assert loy.expected_tokens_per_call(0.5, 1) == pytest.approx(1.5)
    assert loy.expected_tokens_per_call(0.5, 2) == pytest.approx(1.75)
    assert loy.expected_tokens_per_call(1.0, 4) == pytest.approx(5.0)
    assert loy.expected_tokens_per_call(0.0, 8) == pytest.approx(1.0)
    a = np.linspace(0, 0.999, 50)
    assert np.all(np.diff(loy.expected_tokens_per_call(a, 3)) > 0)


def test_lm_token_metrics_use_the_vocabulary_axis():
    rng = np.random.default_rng(3)
    t_logits, s_logits = rng.normal(size=(7, 11)), rng.normal(size=(7, 11))
    lt, ls = log_softmax(t_logits, axis=-1), log_softmax(s_logits, axis=-1)
    per = loy.lm_token_metrics_per_token(lt, ls)
    assert all(v.shape == (7,) for v in per.values())
    pt, ps = np.exp(lt), np.exp(ls)
    assert np.allclose(per["forward_kl"], entropy(pt, ps, axis=1))
    assert np.allclose(per["reverse_kl"], entropy(ps, pt, axis=1))
    assert not np.allclose(per["forward_kl"], per["reverse_kl"])
    # softmax over the wrong axis gives other numbers
    wrong = loy.lm_token_metrics_per_token(log_softmax(t_logits, axis=0), log_softmax(s_logits, axis=0))
    assert not np.allclose(wrong["acceptance_rate"], per["acceptance_rate"])
    out = loy.lm_token_metrics(lt, ls)
    assert out["acceptance_rate"] == pytest.approx(per["acceptance_rate"].mean())
    assert out["expected_tokens_gamma_3"] == pytest.approx(loy.expected_tokens_per_call(out["acceptance_rate"], 3))
    assert sorted(k for k in out if k.startswith("expected_tokens")) == sorted(
        f"expected_tokens_gamma_{g}" for g in range(1, 9))
    same = loy.lm_token_metrics(lt, lt)
    assert same["top1_agreement"] == 1.0 and same["acceptance_rate"] == pytest.approx(1.0)
    assert same["forward_kl"] == pytest.approx(0.0, abs=1e-12) and same["expected_tokens_gamma_8"] == pytest.approx(9.0)


dist = arrays(np.float64, (5, 4), elements=st.floats(0.0, 1.0)).filter(
    lambda x: np.all(x.sum(1) > 0)).map(lambda x: x / x.sum(1, keepdims=True))


@settings(max_examples=60, deadline=None)
@given(dist, dist)
def test_distribution_properties(p, q):
    jsd_pq, jsd_qp = loy.js_divergence(p, q), loy.js_divergence(q, p)
    assert np.allclose(jsd_pq, jsd_qp)
    assert np.all((jsd_pq >= 0) & (jsd_pq <= 1))
    assert np.allclose(loy.js_divergence(p, p), 0.0)
    equal = np.all(np.isclose(p, q, rtol=0, atol=1e-6), axis=1)
    assert np.all((jsd_pq > 0) | equal)  # 0 only if equal
    alpha = loy.acceptance_rate_per_token(p, q)
    assert np.all(np.isclose(alpha[equal], 1.0)) and np.all(alpha[~equal] < 1.0)  # α = 1 iff p = q
    assert loy.probability_loyalty(p, p) == pytest.approx(1.0)
    assert loy.label_loyalty(p, p) == 1.0
    assert loy.top_k_overlap(p, p, 2) == 1.0
    assert loy.regression_loyalty(p[:, 0], p[:, 0], 1.0) == 1.0
