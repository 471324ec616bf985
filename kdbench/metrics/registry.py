"""Metric names (as they appear in the run record) mapped to functions, with bootstrap CIs.

A metric that is a mean of per-example values gets the vectorised bootstrap; any other statistic
(ECE) is re-evaluated on each resample. All metrics of one call share the seed, so their
resamples are the same examples.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from kdbench.metrics import calibration, loyalty
from kdbench.metrics.stats import bootstrap_mean_ci, bootstrap_statistic_ci


@dataclass(frozen=True)
class Metric:
    """``per_example(a, b)`` -> values whose mean is the metric, or ``statistic(a, b)`` -> float."""

    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    statistic: Callable[[np.ndarray, np.ndarray], float] | None = None
    higher_is_better: bool = True


def _nll_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(probs)), labels], 1e-12, 1.0))


def _brier_terms(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.sum((probs - np.eye(probs.shape[1])[labels]) ** 2, axis=1)


def classifier_metrics(ece_bins: int) -> dict[str, Metric]:
    """Metrics of one classifier: functions of (probs, gold labels)."""
    return {
        "accuracy": Metric(per_example=lambda p, y: (p.argmax(axis=1) == y).astype(np.float64)),
        "ece": Metric(statistic=partial(calibration.expected_calibration_error, n_bins=ece_bins), higher_is_better=False),
        "brier": Metric(per_example=_brier_terms, higher_is_better=False),
        "nll": Metric(per_example=_nll_terms, higher_is_better=False),
    }


PAIR_METRICS: dict[str, Metric] = {
    # functions of (teacher probs, student probs)
    "label_loyalty": Metric(per_example=lambda t, s: (t.argmax(axis=1) == s.argmax(axis=1)).astype(np.float64)),
    "probability_loyalty": Metric(per_example=loyalty.probability_loyalty_per_example),
}


def compute(
    metrics: dict[str, Metric],
    names: list[str],
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """``{name: {"value": float, "ci": [low, high]}}`` for each requested metric."""
    out = {}
    for name in names:
        m = metrics[name]
        if m.per_example is not None:
            values = m.per_example(a, b)
            point = float(values.mean())
            low, high = bootstrap_mean_ci(values, n_samples, confidence, seed)
        else:
            point = m.statistic(a, b)
            low, high = bootstrap_statistic_ci(m.statistic, (a, b), n_samples, confidence, seed)
        out[name] = {"value": point, "ci": [low, high]}
    return out
