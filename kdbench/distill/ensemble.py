"""Multi-teacher distillation (``teachers`` in a suite): the ensemble target of the student and the
ensemble's own predictions, scored as a pseudo-model beside each teacher.

The ensemble of teachers j = 1..n with normalised weights w_j (Σ w_j = 1) is the mixture of their
temperature-softened distributions, p_ens = Σ_j w_j softmax(z_j / T) (the mean of probabilities,
as in Hinton et al. 2015's ensembles, rather than the mean of logits). The registry's logit losses
take teacher LOGITS and soften them by T themselves, so the student is handed

    z_ens = T · log Σ_j w_j softmax(z_j / T)

for which softmax(z_ens / T) = Σ_j w_j softmax(z_j / T) / Σ_k Σ_j w_j softmax(z_j / T)_k = p_ens
exactly (the mixture already sums to one): every loss that sees the teacher through softmax(z / T)
sees exactly the ensemble. For regression the ensemble is the weighted mean of the teachers' scores.

At evaluation, the ensemble's probabilities are the weighted mean of the teachers' own (T = 1)
probabilities, so ``student|ensemble`` loyalty compares the student with the ensemble as a model.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp

from kdbench.predictions import ClassifierPredictions, Predictions, RegressionPredictions

ENSEMBLE = "ensemble"  # the pseudo-model's role in the run record


def teacher_roles(n: int) -> list[str]:
    """Run-record roles of the n teachers of an ensemble, in config order."""
    return [f"teacher_{i}" for i in range(1, n + 1)]


def normalised(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not len(w) or (w <= 0).any():
        raise ValueError(f"ensemble weights must be positive, got {list(weights)}")
    return w / w.sum()


def mixture_logits(logits: Sequence[np.ndarray], weights: Sequence[float], temperature: float) -> np.ndarray:
    """``T · log Σ_j w_j softmax(z_j / T)`` over the last axis (see the module docstring): teacher
    logits whose softmax at temperature T is the weighted mixture of the teachers' softened
    distributions. ``logits``: one (n, classes) array per teacher."""
    w = normalised(weights)
    log_probs = np.stack([log_softmax(np.asarray(z, dtype=np.float64) / temperature, axis=-1) for z in logits])
    mixed = logsumexp(log_probs, axis=0, b=w.reshape(-1, *([1] * (log_probs.ndim - 1))))
    return (temperature * mixed).astype(np.float32)


def mean_scores(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Regression: the weighted mean of the teachers' outputs."""
    return np.tensordot(normalised(weights), np.stack(scores).astype(np.float64), axes=1).astype(np.float32)


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
