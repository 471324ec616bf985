"""Multi-teacher distillation (``teachers`` in a suite): the ensemble target the student learns.

The ensemble of teachers j = 1..n with normalised weights w_j (Σ w_j = 1) is the mixture of their
temperature-softened distributions, p_ens = Σ_j w_j softmax(z_j / T) (the mean of probabilities,
as in Hinton et al. 2015's ensembles, rather than the mean of logits). The registry's logit losses
take teacher LOGITS and soften them by T themselves, so the student is handed

    z_ens = T · log Σ_j w_j softmax(z_j / T)

for which softmax(z_ens / T) = Σ_j w_j softmax(z_j / T) / Σ_k Σ_j w_j softmax(z_j / T)_k = p_ens
exactly (the mixture already sums to one): every loss that sees the teacher through softmax(z / T)
sees exactly the ensemble. For regression the ensemble is the weighted mean of the teachers' scores.

At evaluation the ensemble is scored as a model (:mod:`kdbench.predictions.ensemble`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp

from kdbench.predictions.ensemble import normalised


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
