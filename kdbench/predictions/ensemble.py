"""A multi-teacher run's ensemble as a model (``teachers`` in a suite): its predictions are the
weighted mean of the teachers' own (T = 1) probabilities (classifiers) or scores (regression), so
``student|ensemble`` loyalty compares the student with the ensemble as a model. (The student's
training target, the mixture of the teachers' softened distributions: :mod:`kdbench.distill.ensemble`.)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdbench.predictions.base import Predictions
from kdbench.predictions.classifier import ClassifierPredictions, RegressionPredictions
from kdbench.roles import ENSEMBLE


def normalised(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not len(w) or (w <= 0).any():
        raise ValueError(f"ensemble weights must be positive, got {list(weights)}")
    return w / w.sum()


def ensemble_predictions(members: Sequence[Predictions], weights: Sequence[float]) -> Predictions:
    """The ensemble as a model: weighted mean of the members' probabilities (classifiers) or scores."""
    first = members[0]
    for other in members[1:]:
        other.aligned_with(first)
    w = normalised(weights)
    if isinstance(first, ClassifierPredictions):
        probs = np.tensordot(w, np.stack([m.probs for m in members]), axes=1)
        return ClassifierPredictions(first.task, ENSEMBLE, first.example_ids, probs, first.labels)
    if isinstance(first, RegressionPredictions):
        scores = np.tensordot(w, np.stack([m.scores for m in members]), axes=1)
        return RegressionPredictions(first.task, ENSEMBLE, first.example_ids, scores, first.labels)
    raise TypeError(f"{first.task}: no ensemble of {type(first).__name__}")
