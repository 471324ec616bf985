"""Calibration of class probabilities."""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width reliability-diagram data for top-label confidence.

    Bin b covers confidences in (b/B, (b+1)/B] (the first bin also takes 0), as in Guo et al. 2017,
    "On Calibration of Modern Neural Networks". Returns per-bin ``count``, mean ``confidence``,
    ``accuracy`` (NaN for empty bins) and the ``edges``.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins: searchsorted(..., side="left") puts conf == edge into the lower bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": mean_acc}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width bins: Σ_b (n_b / N) · |acc_b − conf_b| over non-empty bins
    (Naeini et al. 2015; Guo et al. 2017). In [0, 1]."""
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins["count"] > 0
    weights = bins["count"][filled] / bins["count"].sum()
    return float(np.sum(weights * np.abs(bins["accuracy"][filled] - bins["confidence"][filled])))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean_i Σ_c (p_ic − 1[y_i = c])² (Brier 1950). In [0, 2]."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold class: −mean_i log p_i,y_i (natural log)."""
    probs = np.asarray(probs, dtype=np.float64)
    picked = probs[np.arange(len(probs)), np.asarray(labels)]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))
