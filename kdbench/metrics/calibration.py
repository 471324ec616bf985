"""Calibration of class probabilities: ECE (equal-width and equal-mass bins), MCE, classwise ECE,
Brier scores, NLL, reliability-diagram data, temperature scaling, selective accuracy and the
coverage–accuracy curve. ``probs`` is (N, K) with rows summing to 1, ``labels`` (N,) ints."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import softmax

_EPS = 1e-12


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence max_k p_ik and correctness 1[argmax_k p_ik = y_i] (float)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def equal_width_bin(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each confidence for B equal-width bins: bin b covers (b/B, (b+1)/B], the first
    bin also takes 0 (Guo et al. 2017). A confidence exactly on an edge goes to the lower bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)


def equal_mass_bin(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index for B equal-mass bins (Nixon et al. 2019, "Measuring Calibration in Deep Learning";
    Roelofs et al. 2022): sort confidences ascending (stable, so ties keep example order) and give
    the example of rank r ∈ [0, N) bin ⌊r·B/N⌋; every bin holds ⌊N/B⌋ or ⌈N/B⌉ examples."""
    n = conf.size
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(conf, kind="stable")] = np.arange(n)
    return (rank * n_bins) // max(n, 1)


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, strategy: str = "width"
) -> dict[str, np.ndarray]:
    """Reliability-diagram data for top-label confidence (DeGroot & Fienberg 1983; Guo et al. 2017).

    ``strategy="width"``: B equal-width bins (b/B, (b+1)/B] (the first also takes 0);
    ``"mass"``: B equal-mass bins (see :func:`equal_mass_bin`). Returns per-bin ``count``, mean
    ``confidence`` and ``accuracy`` (NaN for empty bins) and the ``edges`` (for equal-mass bins: the
    lowest confidence of each bin and 1.0; equal-width: 0, 1/B, …, 1).
    """
    conf, correct = top_label(probs, labels)
    if strategy == "width":
        idx = equal_width_bin(conf, n_bins)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "mass":
        idx = equal_mass_bin(conf, n_bins)
        lows = np.full(n_bins, np.inf)
        np.minimum.at(lows, idx, conf)
        edges = np.r_[np.where(np.isinf(lows), np.nan, lows), 1.0]
    else:
        raise ValueError(f"unknown binning strategy {strategy!r} (width or mass)")
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": mean_acc}


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, strategy: str = "width"
) -> float:
    """ECE = Σ_b (n_b / N)·|acc_b − conf_b| = (1/N) Σ_b |Σ_{i∈b} (c_i − conf_i)| over top-label
    confidence bins (Naeini et al. 2015; Guo et al. 2017). ``strategy`` "width" (equal-width, the
    usual ECE) or "mass" (equal-mass, Nixon et al. 2019). In [0, 1]."""
    bins = reliability_bins(probs, labels, n_bins, strategy)
    filled = bins["count"] > 0
    weights = bins["count"][filled] / bins["count"].sum()
    return float(np.sum(weights * np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def maximum_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """MCE = max over non-empty equal-width bins of |acc_b − conf_b| (Naeini et al. 2015). In [0, 1]."""
    bins = reliability_bins(probs, labels, n_bins, "width")
    filled = bins["count"] > 0
    return float(np.max(np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019, "Beyond temperature scaling"):
    (1/K) Σ_k Σ_b (n_kb / N)·|ȳ_kb − p̄_kb|, where for each class k the examples are put in B
    equal-width bins of p_ik, ȳ_kb is the share of bin members whose label is k and p̄_kb their mean
    p_ik. Equivalently (1/(K·N)) Σ_k Σ_b |Σ_{i∈(k,b)} (1[y_i = k] − p_ik)|. In [0, 1]."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    n, k = probs.shape
    idx = equal_width_bin(probs, n_bins)  # (N, K)
    d = (labels[:, None] == np.arange(k)).astype(np.float64) - probs
    cell = idx + n_bins * np.arange(k)  # (N, K) cell id of class k's bin
    sums = np.bincount(cell.ravel(), weights=d.ravel(), minlength=k * n_bins)
    return float(np.abs(sums).sum() / (k * n))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean_i Σ_c (p_ic − 1[y_i = c])² (Brier 1950). In [0, 2]. For K = 2
    this is twice scikit-learn's ``brier_score_loss`` on the positive class."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def top_label_brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-label Brier score: mean_i (conf_i − c_i)², the Brier score of the top-label confidence as
    a forecast of correctness (Gupta & Ramdas 2022, "Top-label calibration"). In [0, 1]."""
    conf, correct = top_label(probs, labels)
    return float(np.mean((conf - correct) ** 2))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold class: −mean_i ln p_i,y_i (natural log; p clipped
    at 1e-12 so a zero probability costs 27.6 nats rather than infinity)."""
    probs = np.asarray(probs, dtype=np.float64)
    picked = probs[np.arange(len(probs)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


# --------------------------------------------------------------------------------------------------
# temperature scaling
# --------------------------------------------------------------------------------------------------
def probs_to_logits(probs: np.ndarray) -> np.ndarray:
    """ln p (clipped at 1e-12): logits up to a per-row constant, which softmax ignores."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(z / T) over the class axis (axis 1), z = ln p (Guo et al. 2017)."""
    return softmax(probs_to_logits(probs) / temperature, axis=1)


def fit_temperature(probs: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """T > 0 minimising the NLL of softmax(z / T) on (probs, labels) (Guo et al. 2017, §4.2), z = ln p.

    With β = 1/T the NLL, mean_i [logsumexp(β z_i) − β z_i,y_i], is convex in β, with gradient
    mean_i (E_β[z_i] − z_i,y_i) and curvature mean_i Var_β[z_i]; we take safeguarded Newton steps
    from β = 1 (a bracketed bisection when a step leaves the bracket), clipped to ``bounds`` on T.
    """
    z, labels = probs_to_logits(probs), np.asarray(labels)
    zy = z[np.arange(len(labels)), labels]
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]

    def grad_curv(beta: float) -> tuple[float, float]:
        p = softmax(beta * z, axis=1)
        ez = np.sum(p * z, axis=1)
        return float(np.mean(ez - zy)), float(np.mean(np.sum(p * z * z, axis=1) - ez * ez))

    beta = 1.0
    for _ in range(100):
        g, h = grad_curv(beta)
        if g > 0:
            hi = beta
        else:
            lo = beta
        step = beta - g / h if h > 1e-12 else 0.5 * (lo + hi)
        new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(new - beta) <= 1e-10 * max(1.0, beta) or hi - lo < 1e-12:
            beta = new
            break
        beta = new
    return float(1.0 / min(max(beta, 1.0 / bounds[1]), 1.0 / bounds[0]))


def temperature_split(n: int, fit_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of range(n) into (fit, eval) index arrays, ⌊n·fit_fraction⌋ to fit."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(n * fit_fraction)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def temperature_scaling_report(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, fit_fraction: float = 0.5, seed: int = 0
) -> dict[str, float]:
    """Fit T on a held-out part (``fit_fraction`` of the examples, seeded split) and report ECE and
    NLL on the *other* part before and after scaling: ``temperature``, ``ece_before``,
    ``ece_after``, ``nll_before``, ``nll_after``."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    fit, ev = temperature_split(len(labels), fit_fraction, seed)
    t = fit_temperature(probs[fit], labels[fit])
    scaled = apply_temperature(probs[ev], t)
    return {
        "temperature": t,
        "ece_before": expected_calibration_error(probs[ev], labels[ev], n_bins),
        "ece_after": expected_calibration_error(scaled, labels[ev], n_bins),
        "nll_before": negative_log_likelihood(probs[ev], labels[ev]),
        "nll_after": negative_log_likelihood(scaled, labels[ev]),
    }


# --------------------------------------------------------------------------------------------------
# selective prediction
# --------------------------------------------------------------------------------------------------
def _descending(conf: np.ndarray) -> np.ndarray:
    """Examples from most to least confident; among equal confidences the later example first
    (the reverse of a stable ascending sort, the order the bootstrap engine uses)."""
    return np.argsort(conf, kind="stable")[::-1]


def selective_accuracy(probs: np.ndarray, labels: np.ndarray, coverage: float = 0.1) -> float:
    """Accuracy on the k = ⌈coverage·N⌉ most confident examples (top-label confidence; among ties the
    later example counts as more confident) — the coverage point of the risk–coverage curve (Geifman & El-Yaniv 2017)."""
    conf, correct = top_label(probs, labels)
    k = max(1, math.ceil(coverage * conf.size - 1e-9))
    top = _descending(conf)[:k]
    return float(correct[top].mean())


def coverage_accuracy_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage k/N, accuracy of the k most confident) for k = 1..N (descending confidence)."""
    conf, correct = top_label(probs, labels)
    order = _descending(conf)
    k = np.arange(1, conf.size + 1)
    return k / conf.size, np.cumsum(correct[order]) / k


def coverage_accuracy_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the coverage–accuracy curve, (1/N) Σ_{k=1}^{N} acc_k with acc_k the accuracy of the
    k most confident examples = 1 − AURC (Geifman et al. 2019, "Bias-reduced uncertainty estimation
    for deep neural classifiers"). Equivalently (1/N) Σ_j c_(j) (H_N − H_{j−1}) over confidence
    ranks j, H the harmonic numbers. In [0, 1]; 1 iff all correct."""
    _, acc = coverage_accuracy_curve(probs, labels)
    return float(acc.mean())
