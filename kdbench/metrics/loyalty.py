"""Teacher–student loyalty: how faithfully a student reproduces its teacher's outputs
(Stanton et al. 2021, "Does Knowledge Distillation Really Work?"; loyalty as in Xu et al. 2021)."""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def label_loyalty(teacher_probs: np.ndarray, student_probs: np.ndarray) -> float:
    """Share of examples where the student's argmax equals the teacher's: mean(1[argmax p_t = argmax p_s])."""
    return float(np.mean(np.argmax(teacher_probs, axis=1) == np.argmax(student_probs, axis=1)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen–Shannon divergence with base-2 logs, so each value is in [0, 1]:
    JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½ (p + q)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * (np.log2(np.clip(a, _EPS, None)) - np.log2(np.clip(b, _EPS, None))), 0.0)
        return terms.sum(axis=1)

    return np.clip(0.5 * kl(p, m) + 0.5 * kl(q, m), 0.0, 1.0)


def probability_loyalty_per_example(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """1 − √JSD₂(p_t, p_s) per example: 1 for identical distributions, 0 for disjoint ones."""
    return 1.0 - np.sqrt(js_divergence(teacher_probs, student_probs))


def probability_loyalty(teacher_probs: np.ndarray, student_probs: np.ndarray) -> float:
    """Mean over examples of 1 − √JSD(p_t, p_s) with base-2 JSD (√JSD is the Jensen–Shannon distance)."""
    return float(np.mean(probability_loyalty_per_example(teacher_probs, student_probs)))
