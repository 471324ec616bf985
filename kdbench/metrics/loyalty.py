"""Teacher–student loyalty and agreement: how faithfully a student reproduces its teacher's outputs
(Stanton et al. 2021, "Does Knowledge Distillation Really Work?"; loyalty as in Xu et al. 2021,
"Beyond Preserved Accuracy: Evaluating Loyalty and Robustness of BERT Compression"), and per-token
agreement of causal LMs including the speculative-decoding acceptance rate (Leviathan et al. 2023,
"Fast Inference from Transformers via Speculative Decoding").

Conventions: classifier arrays are (N, K) probabilities; LM arrays are (T, V) per-token
distributions (rows of probabilities or of log-probabilities, as each function says) with the
vocabulary on the last axis.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def label_loyalty_per_example(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """1[argmax p_t = argmax p_s] per example (float)."""
    return (np.argmax(teacher_probs, axis=-1) == np.argmax(student_probs, axis=-1)).astype(np.float64)


def label_loyalty(teacher_probs: np.ndarray, student_probs: np.ndarray) -> float:
    """Share of examples where the student's argmax equals the teacher's: mean(1[argmax p_t = argmax p_s])."""
    return float(np.mean(label_loyalty_per_example(teacher_probs, student_probs)))


def _xlogy2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·log₂(a / b) with 0·log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, a * (np.log2(np.clip(a, _EPS, None)) - np.log2(np.clip(b, _EPS, None))), 0.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-row Jensen–Shannon divergence with base-2 logs, so each value is in [0, 1] (Lin 1991):
    JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½ (p + q). Symmetric; 0 iff p = q. Its square root
    is the Jensen–Shannon distance (``scipy.spatial.distance.jensenshannon(p, q, base=2)``)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    return np.clip(0.5 * _xlogy2(p, m).sum(axis=-1) + 0.5 * _xlogy2(q, m).sum(axis=-1), 0.0, 1.0)


def probability_loyalty_per_example(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """1 − √JSD₂(p_t, p_s) per example: 1 for identical distributions, 0 for disjoint ones."""
    return 1.0 - np.sqrt(js_divergence(teacher_probs, student_probs))


def probability_loyalty(teacher_probs: np.ndarray, student_probs: np.ndarray) -> float:
    """Mean over examples of 1 − √JSD(p_t, p_s) with base-2 JSD (Xu et al. 2021); √JSD₂ is the
    Jensen–Shannon distance, so each term is in [0, 1]."""
    return float(np.mean(probability_loyalty_per_example(teacher_probs, student_probs)))


def regression_loyalty_per_example(teacher_preds: np.ndarray, student_preds: np.ndarray, label_range: float) -> np.ndarray:
    """1 − √(|y_t − y_s| / R) per example, R = the task's label range (e.g. 5 for STS-B's 0–5),
    the difference clipped to R so each term is in [0, 1].

    kdbench's definition: Xu et al. 2021 define regression loyalty from the normalised
    teacher–student distance, but their normalisation is not published in a form we could verify;
    we normalise by the label range and take the square root to mirror probability loyalty."""
    if not label_range > 0:
        raise ValueError(f"label_range must be > 0, got {label_range}")
    diff = np.abs(np.asarray(teacher_preds, dtype=np.float64) - np.asarray(student_preds, dtype=np.float64))
    return 1.0 - np.sqrt(np.minimum(diff / label_range, 1.0))


def regression_loyalty(teacher_preds: np.ndarray, student_preds: np.ndarray, label_range: float) -> float:
    """Mean over examples of 1 − √(|y_t − y_s| / R), R the label range (see the per-example form)."""
    return float(np.mean(regression_loyalty_per_example(teacher_preds, student_preds, label_range)))


def top_k_overlap_per_example(teacher_probs: np.ndarray, student_probs: np.ndarray, k: int) -> np.ndarray:
    """|top_k(p_t) ∩ top_k(p_s)| / k per example (top-k sets of class indices; ties broken by index)."""
    t = np.argsort(-np.asarray(teacher_probs), axis=-1, kind="stable")[..., :k]
    s = np.argsort(-np.asarray(student_probs), axis=-1, kind="stable")[..., :k]
    hits = (t[..., :, None] == s[..., None, :]).any(axis=-1).sum(axis=-1)
    return hits / k


def top_k_overlap(teacher_probs: np.ndarray, student_probs: np.ndarray, k: int = 5) -> float:
    """Mean over examples of |top_k(p_t) ∩ top_k(p_s)| / k; k is capped at the number of classes
    (so it is 1 whenever k ≥ K)."""
    k = min(k, np.asarray(teacher_probs).shape[-1])
    return float(np.mean(top_k_overlap_per_example(teacher_probs, student_probs, k)))


# --------------------------------------------------------------------------------------------------
# distribution distances per row (tokens or examples)
# --------------------------------------------------------------------------------------------------
def kl_divergence(p_logprobs: np.ndarray, q_logprobs: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) = Σ_y p(y)(ln p(y) − ln q(y)) per row, natural log, from log-probabilities."""
    lp, lq = np.asarray(p_logprobs, dtype=np.float64), np.asarray(q_logprobs, dtype=np.float64)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """TVD(p, q) = ½ Σ_y |p(y) − q(y)| per row, in [0, 1]."""
    return 0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum(axis=-1)


def acceptance_rate_per_token(target_probs: np.ndarray, draft_probs: np.ndarray) -> np.ndarray:
    """β = Σ_y min(p(y), q(y)) = 1 − TVD(p, q) per token: the probability that speculative sampling
    accepts a draft token from q when the target is p (Leviathan et al. 2023, §3.5)."""
    return np.minimum(np.asarray(target_probs, dtype=np.float64), np.asarray(draft_probs, dtype=np.float64)).sum(axis=-1)


def expected_tokens_per_call(alpha: float | np.ndarray, gamma: int) -> float | np.ndarray:
    """Expected tokens produced per target-model call with γ draft tokens and acceptance rate α:
    (1 − α^{γ+1}) / (1 − α) (Leviathan et al. 2023, eq. 1), = γ + 1 at α = 1. Increasing in α."""
    a = np.asarray(alpha, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.isclose(a, 1.0), gamma + 1.0, (1.0 - a ** (gamma + 1)) / (1.0 - a))
    return float(out) if out.ndim == 0 else out


def lm_token_metrics_per_token(teacher_logprobs: np.ndarray, student_logprobs: np.ndarray) -> dict[str, np.ndarray]:
    """Per-token teacher–student metrics for causal LMs from (T, V) log-probability arrays (rows are
    next-token distributions over the same vocabulary; log_softmax the logits first, over the
    vocabulary axis): ``top1_agreement`` 1[argmax p = argmax q], ``forward_kl`` KL(p_t ‖ p_s),
    ``reverse_kl`` KL(p_s ‖ p_t), ``tvd`` and ``acceptance_rate`` Σ_y min(p_t, p_s) (teacher = target,
    student = draft). Average them over tokens for the corpus figures."""
    lt, ls = np.asarray(teacher_logprobs, dtype=np.float64), np.asarray(student_logprobs, dtype=np.float64)
    pt, ps = np.exp(lt), np.exp(ls)
    return {
        "top1_agreement": (lt.argmax(axis=-1) == ls.argmax(axis=-1)).astype(np.float64),
        "forward_kl": kl_divergence(lt, ls),
        "reverse_kl": kl_divergence(ls, lt),
        "tvd": total_variation(pt, ps),
        "acceptance_rate": acceptance_rate_per_token(pt, ps),
    }


def lm_token_metrics(teacher_logprobs: np.ndarray, student_logprobs: np.ndarray, max_gamma: int = 8) -> dict[str, float]:
    """Corpus means of :func:`lm_token_metrics_per_token` plus ``expected_tokens_gamma_{γ}`` =
    (1 − α^{γ+1}) / (1 − α) for γ = 1..max_gamma, with α the mean acceptance rate."""
    per = lm_token_metrics_per_token(teacher_logprobs, student_logprobs)
    out = {k: float(v.mean()) for k, v in per.items()}
    for g in range(1, max_gamma + 1):
        out[f"expected_tokens_gamma_{g}"] = float(expected_tokens_per_call(out["acceptance_rate"], g))
    return out
