"""Multi-teacher targets: the mixture identity behind ``mixture_logits`` checked against a hand
computation, and the ensemble pseudo-model's probabilities (synthetic numbers: formula tests)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.distill.ensemble import mean_scores, mixture_logits
from kdbench.distill.losses import LOSSES
from kdbench.predictions import ClassifierPredictions
from kdbench.predictions.ensemble import ensemble_predictions, normalised
from kdbench.roles import ENSEMBLE


def test_mixture_logits_soften_back_to_the_weighted_mixture_by_hand():
    z1, z2, T = np.array([[2.0, 0.0, -1.0]]), np.array([[-0.5, 1.5, 0.5]]), 2.0
    # by hand: softmax(z / T) of each teacher, then 0.25 · p1 + 0.75 · p2 (weights 1 and 3, normalised)
    p1 = np.exp([1.0, 0.0, -0.5]) / np.exp([1.0, 0.0, -0.5]).sum()
    p2 = np.exp([-0.25, 0.75, 0.25]) / np.exp([-0.25, 0.75, 0.25]).sum()
    expected = 0.25 * p1 + 0.75 * p2
    z = mixture_logits([z1, z2], [1.0, 3.0], T)
    softened = np.exp(z / T) / np.exp(z / T).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(softened[0], expected, rtol=1e-6)
    # the mixture sums to one already, so T · log p_ens is the logit itself (no normaliser left)
    np.testing.assert_allclose(z[0], T * np.log(expected), rtol=1e-6)


def test_equal_weights_are_the_mean_of_probabilities_not_of_logits():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(5, 4)) * 3 for _ in range(3)]
    T = 1.0
    z = mixture_logits(logits, [1, 1, 1], T)
    probs = [np.exp(x) / np.exp(x).sum(-1, keepdims=True) for x in logits]
    mean_prob = np.mean(probs, axis=0)
    np.testing.assert_allclose(np.exp(z) / np.exp(z).sum(-1, keepdims=True), mean_prob, rtol=1e-5)
    mean_logit = np.mean(logits, axis=0)
    assert not np.allclose(mean_prob, np.exp(mean_logit) / np.exp(mean_logit).sum(-1, keepdims=True), atol=1e-3)


def test_forward_kl_on_mixture_logits_is_kl_to_the_mixture():
    """The registry loss, fed the mixture logits, computes KL(p_ens ‖ p_student) at temperature T."""
    rng = np.random.default_rng(1)
    t1, t2, student = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    T = 3.0
    teacher = torch.tensor(mixture_logits([t1, t2], [0.3, 0.7], T))
    loss = LOSSES["forward_kl"](torch.tensor(student, dtype=torch.float32), teacher, temperature=T, t2_scaling=False)
    soft = lambda x: np.exp(x / T) / np.exp(x / T).sum(-1, keepdims=True)  # noqa: E731
    p_ens = 0.3 * soft(t1) + 0.7 * soft(t2)
    expected = np.mean(np.sum(p_ens * (np.log(p_ens) - np.log(soft(student))), axis=-1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_regression_ensemble_is_the_weighted_mean_and_weights_must_be_positive():
    np.testing.assert_allclose(mean_scores([np.array([[1.0], [2.0]]), np.array([[3.0], [6.0]])], [1, 1]), [[2.0], [4.0]])
    np.testing.assert_allclose(normalised([2, 6]), [0.25, 0.75])
    with pytest.raises(ValueError, match="positive"):
        normalised([1.0, 0.0])


def test_ensemble_predictions_average_probabilities_with_weights():
    ids, labels = ["a", "b"], np.array([0, 1])
    p1 = ClassifierPredictions("sst2", "teacher_1", ids, np.array([[0.9, 0.1], [0.2, 0.8]]), labels)
    p2 = ClassifierPredictions("sst2", "teacher_2", ids, np.array([[0.3, 0.7], [0.6, 0.4]]), labels)
    ens = ensemble_predictions([p1, p2], [0.5, 0.5])
    assert ens.role == ENSEMBLE
    np.testing.assert_allclose(ens.probs, [[0.6, 0.4], [0.4, 0.6]])
    with pytest.raises(ValueError, match="different examples"):
        ensemble_predictions([p1, ClassifierPredictions("sst2", "teacher_2", ["a", "c"], p2.probs, labels)], [1, 1])
