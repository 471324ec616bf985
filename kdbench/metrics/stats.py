"""Statistics for the report and the gate."""
from __future__ import annotations

import numpy as np


def bootstrap_mean_ci(
    values: np.ndarray, n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-example ``values`` (Efron & Tibshirani 1993).

    Resamples examples with replacement ``n_samples`` times (vectorised, seeded) and returns the
    (α/2, 1 − α/2) quantiles of the resampled means, α = 1 − confidence.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_samples, len(values)))
    means = values[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_statistic_ci(
    statistic, arrays: tuple[np.ndarray, ...], n_samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of any ``statistic(*arrays)`` that is not a mean of per-example
    values (ECE, say): the same seeded resampling of examples, one evaluation per resample."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_samples, n))
    values = np.array([statistic(*(a[i] for a in arrays)) for i in idx])
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
