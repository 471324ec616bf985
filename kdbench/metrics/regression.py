"""Metrics of regression heads (GLUE STS-B): Pearson and Spearman correlation with gold scores,
mean squared error; teacher–student regression loyalty; the paired difference of two systems.

CIs are percentile bootstraps over examples (Efron resamples, seeded, vectorised: one index matrix
for all resamples; Spearman re-ranks each resample with average ranks for the ties that
resampling creates).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from kdbench.metrics import loyalty
from kdbench.metrics.stats import bootstrap_mean_ci, percentile_ci

METRICS = ("pearson", "spearman", "mse")
PAIR_METRICS = ("regression_loyalty",)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis: Σ(x−x̄)(y−ȳ) / √(Σ(x−x̄)² Σ(y−ȳ)²); 0 for a constant input."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc * yc).sum(axis=-1) / np.where(denom > 0, denom, 1), 0.0)


def _statistic(name: str, pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    if name == "pearson":
        return _pearson_rows(pred, gold)
    if name == "spearman":  # Pearson of average ranks (Spearman 1904)
        return _pearson_rows(rankdata(pred, axis=-1), rankdata(gold, axis=-1))
    return ((pred - gold) ** 2).mean(axis=-1)


def _resample_index(n: int, n_samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_samples, n))


def score(pred: np.ndarray, gold: np.ndarray, names: list[str], *, n_samples: int = 1000,
          confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """``{name: {"value", "ci"}}`` for ``pearson``, ``spearman`` and ``mse`` of predictions vs gold."""
    pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    idx = _resample_index(len(pred), n_samples, seed)
    return {name: {"value": float(_statistic(name, pred, gold)),
                   "ci": list(percentile_ci(_statistic(name, pred[idx], gold[idx]), confidence))}
            for name in names}


def score_pair(teacher: np.ndarray, student: np.ndarray, label_range: float, *, n_samples: int = 1000,
               confidence: float = 0.95, seed: int = 0) -> dict[str, dict]:
    """Regression loyalty (kdbench.metrics.loyalty.regression_loyalty_per_example) with its CI."""
    per = loyalty.regression_loyalty_per_example(teacher, student, label_range)
    return {"regression_loyalty": {"value": float(per.mean()),
                                   "ci": list(bootstrap_mean_ci(per, n_samples, confidence, seed))}}


def compare(a: np.ndarray, b: np.ndarray, gold: np.ndarray, *, n_samples: int = 1000, confidence: float = 0.95,
            seed: int = 0) -> dict[str, dict]:
    """System A against B on the same items: ``pearson_difference`` r_A − r_B with a paired
    bootstrap CI (both systems scored on the same resamples) and its two-sided bootstrap p-value."""
    a, b, gold = (np.asarray(v, dtype=np.float64) for v in (a, b, gold))
    idx = _resample_index(len(gold), n_samples, seed)
    diffs = _pearson_rows(a[idx], gold[idx]) - _pearson_rows(b[idx], gold[idx])
    value = float(_pearson_rows(a, gold) - _pearson_rows(b, gold))
    p = min(1.0, 2.0 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))) if value != 0 else 1.0
    return {"pearson_difference": {"value": value, "ci": list(percentile_ci(diffs, confidence))},
            "pearson_difference_p_value": {"value": float(p), "ci": None}}
