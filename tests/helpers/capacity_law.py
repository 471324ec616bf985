"""Constructed per-example outcomes for the capacity-gap statistics (the law, the best tier, the
assistant comparison): a classifier right exactly where told, and the resampling settings."""
from __future__ import annotations

import numpy as np

from kdbench.metrics import spec as metric_spec
from kdbench.metrics.classification import ClassifierTable

HOW = metric_spec.Resampling(1000, 0.95, 0, {})
ACCURACY = metric_spec.kind("classifier").metric("accuracy")


def table(correct: np.ndarray) -> ClassifierTable:
    """A two-class classifier right exactly where ``correct`` is true (labels all 0)."""
    correct = np.asarray(correct, dtype=bool)
    probs = np.where(correct[:, None], [0.9, 0.1], [0.1, 0.9])
    return ClassifierTable(probs, np.zeros(correct.size, dtype=np.int64))


def outcomes(n: int, rate: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < rate
