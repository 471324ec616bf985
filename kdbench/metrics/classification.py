"""Classification metrics over per-example predictions."""
from __future__ import annotations

import numpy as np


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Fraction of examples whose predicted class equals the gold class: mean(1[ŷ_i = y_i])."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    return float(np.mean(labels == preds))
