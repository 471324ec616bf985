"""Language-modelling metrics: corpus perplexity and bits per byte with document-bootstrap CIs, and
teacher–student per-token metrics from top-k next-token distributions.

Perplexity (token-weighted, as lm-eval's ``word_perplexity`` but per token):
    PPL = exp(Σ_d NLL_d / Σ_d n_d),  NLL_d = −Σ_t ln p(x_t | x_<t) over document d's n_d tokens.
Bits per byte: BPB = Σ_d NLL_d / (ln 2 · Σ_d bytes_d), bytes = UTF-8 bytes of the text (comparable
across tokenizers). Both are ratio estimators; their CI resamples documents with replacement and
recomputes the ratio (percentile interval; Efron & Tibshirani 1993, §10 on ratio statistics).

Top-k token metrics. Each model keeps, per position, its top-k next-token ids and log-probs and
its leftover mass r = 1 − Σ top-k p. The metrics are computed on a coarsened distribution over the
UNION U = K_t ∪ K_s of the two top-k sets plus one "rest" bucket (every other token):
* a token in a model's own top k has its exact probability;
* the m tokens of the other model's top k missing from this one's have unknown probabilities
  p ≤ p_(k) inside the leftover mass r. They are imputed by a geometric interpolation between two
  guesses, weighted by the top-k overlap o = 1 − m/k: "near the top-k boundary",
  a = min(p_(k), r / (m + 1)), right when the models agree (o → 1: the missing ids rank just
  below k), and "anywhere in the tail", b = min(p_(k), r / (V − k)), right when they do not
  (o → 0: the other model's favourites are random tokens to this one):  p̂ = a^o · b^(1−o);
* the rest bucket holds what remains of r (≥ 0), so each coarsened distribution sums to 1.
KL(t‖s), KL(s‖t), TVD and α = Σ min(p, q) are then computed over U ∪ {rest}. This is an
approximation: imputed probabilities are estimates and the rest bucket merges tokens (which alone
can only lower KL and TVD, by the data-processing inequality). ``top1_agreement`` is exact.

Measured error against the exact full-vocabulary values (SmolLM2-135M-Instruct teacher, 1,672
tokens of GSM8K test solutions, k = 128; tests/test_language_modeling.py re-measures it):
a 24-of-30-layer student (exact KL 2.13): forward KL −1 %, reverse KL −9 %, TVD −0.012;
an 8-of-30-layer student (exact KL 9.2, TVD 0.97): forward KL −2 %, reverse KL −21 %, TVD −0.022;
the teacher in bf16 against fp32 (KL 0.0008): KL −4 %, TVD −0.0004. α = 1 − TVD on the coarsened
distributions, so its absolute error is TVD's. The shared-support alternative (cells only for ids
in both top k) underestimates far more (forward KL −34 % for the 24-layer student).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kdbench.metrics.stats import percentile_ci

_TINY = 1e-30  # floor for probabilities inside logs (KL of a coarsened cell with zero mass)
_CHUNK_CELLS = 2**24  # k × k id comparisons per position: positions per block = this / k²


# --------------------------------------------------------------------------------------------------
# perplexity and bits per byte
# --------------------------------------------------------------------------------------------------
def bootstrap_ratio_samples(num: np.ndarray, den: np.ndarray, n_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """Σ w_d num_d / Σ w_d den_d for ``n_samples`` Efron resamples w of the documents."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    n = num.size
    rng = np.random.default_rng(seed)
    out = np.empty(n_samples)
    block = max(1, 2_000_000 // max(n, 1))  # resamples per block: bounded memory for large corpora
    for start in range(0, n_samples, block):
        b = min(block, n_samples - start)
        idx = rng.integers(0, n, size=(b, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return out


def perplexity(nll: np.ndarray, tokens: np.ndarray) -> float:
    """exp(Σ NLL_d / Σ n_d) over documents (natural-log NLLs)."""
    return float(np.exp(np.sum(nll) / np.sum(tokens)))


def bits_per_byte(nll: np.ndarray, n_bytes: np.ndarray) -> float:
    """Σ NLL_d / (ln 2 · Σ bytes_d)."""
    return float(np.sum(nll) / (math.log(2) * np.sum(n_bytes)))


def perplexity_with_ci(nll: np.ndarray, tokens: np.ndarray, n_samples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict:
    ratios = bootstrap_ratio_samples(nll, tokens, n_samples, seed)
    lo, hi = percentile_ci(np.exp(ratios), confidence)
    return {"value": perplexity(nll, tokens), "ci": [lo, hi]}


def bits_per_byte_with_ci(nll: np.ndarray, n_bytes: np.ndarray, n_samples: int = 1000, confidence: float = 0.95,
                          seed: int = 0) -> dict:
    ratios = bootstrap_ratio_samples(nll, n_bytes, n_samples, seed) / math.log(2)
    lo, hi = percentile_ci(ratios, confidence)
    return {"value": bits_per_byte(nll, n_bytes), "ci": [lo, hi]}


# --------------------------------------------------------------------------------------------------
# teacher–student token metrics from top-k distributions
# --------------------------------------------------------------------------------------------------
def topk_token_metrics(t_ids: np.ndarray, t_logprobs: np.ndarray, t_rest: np.ndarray,
                       s_ids: np.ndarray, s_logprobs: np.ndarray, s_rest: np.ndarray,
                       vocab_size: int) -> dict[str, np.ndarray]:
    """Per-position ``top1_agreement``, ``forward_kl`` KL(t‖s), ``reverse_kl`` KL(s‖t), ``tvd`` and
    ``acceptance_rate`` Σ min(p_t, p_s) (teacher = target, student = draft) from the two models'
    top-k rows ((T, k) ids sorted by probability, their log-probs, (T,) leftover masses), on the
    union of the top-k supports plus a rest bucket (see the module docstring); ``vocab_size`` V."""
    t_ids, s_ids = np.asarray(t_ids), np.asarray(s_ids)
    if t_ids.shape != s_ids.shape:
        raise ValueError(f"top-k rows differ in shape: {t_ids.shape} vs {s_ids.shape}")
    if t_ids.ndim != 2 or t_ids.shape[1] > vocab_size:
        raise ValueError(f"top-k rows of shape {t_ids.shape} for a vocabulary of {vocab_size}")
    chunk = max(1, _CHUNK_CELLS // (t_ids.shape[1] ** 2))
    parts = [_topk_block(t_ids[i:i + chunk], t_logprobs[i:i + chunk], t_rest[i:i + chunk],
                         s_ids[i:i + chunk], s_logprobs[i:i + chunk], s_rest[i:i + chunk], vocab_size)
             for i in range(0, len(t_ids), chunk)]
    if not parts:
        return {k: np.zeros(0) for k in ("top1_agreement", "forward_kl", "reverse_kl", "tvd", "acceptance_rate")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _topk_block(t_ids, t_lp, t_rest, s_ids, s_lp, s_rest, vocab_size: int) -> dict[str, np.ndarray]:
    t_p = np.exp(np.asarray(t_lp, dtype=np.float64))
    s_p = np.exp(np.asarray(s_lp, dtype=np.float64))
    t_rest = np.clip(np.asarray(t_rest, dtype=np.float64), 0.0, 1.0)
    s_rest = np.clip(np.asarray(s_rest, dtype=np.float64), 0.0, 1.0)
    same = t_ids[:, :, None] == s_ids[:, None, :]  # (T, k_t, k_s)
    t_in_s = same.any(axis=2)  # teacher's top-k id is in the student's top k
    s_in_t = same.any(axis=1)
    # the other model's probability of each id: exact where shared, imputed elsewhere
    s_on_t = np.where(t_in_s, (same * s_p[:, None, :]).sum(axis=2), 0.0)
    t_on_s = np.where(s_in_t, (same * t_p[:, :, None]).sum(axis=1), 0.0)
    t_missing = (~s_in_t).sum(axis=1)  # student's ids outside the teacher's top k
    s_missing = (~t_in_s).sum(axis=1)
    k, vocab = t_ids.shape[1], vocab_size
    t_fill = _impute(t_p[:, -1], t_rest, t_missing, k, vocab)  # teacher prob of the student's extra ids
    s_fill = _impute(s_p[:, -1], s_rest, s_missing, k, vocab)
    s_on_t = np.where(t_in_s, s_on_t, s_fill[:, None])
    t_on_s = np.where(s_in_t, t_on_s, t_fill[:, None])
    # union = teacher's top k (p exact, q exact/imputed) + student's ids outside it (p imputed, q exact)
    p = np.concatenate([t_p, np.where(s_in_t, 0.0, t_on_s)], axis=1)
    q = np.concatenate([s_on_t, np.where(s_in_t, 0.0, s_p)], axis=1)
    p_rest = np.clip(t_rest - t_fill * t_missing, 0.0, 1.0)
    q_rest = np.clip(s_rest - s_fill * s_missing, 0.0, 1.0)
    p = np.concatenate([p, p_rest[:, None]], axis=1)
    q = np.concatenate([q, q_rest[:, None]], axis=1)
    return {
        "top1_agreement": (t_ids[:, 0] == s_ids[:, 0]).astype(np.float64),
        "forward_kl": _kl(p, q),
        "reverse_kl": _kl(q, p),
        "tvd": 0.5 * np.abs(p - q).sum(axis=1),
        "acceptance_rate": np.minimum(p, q).sum(axis=1),
    }


def _impute(p_k: np.ndarray, rest: np.ndarray, missing: np.ndarray, k: int, vocab: int) -> np.ndarray:
    """p̂ = a^o · b^(1−o), a = min(p_(k), r/(m+1)), b = min(p_(k), r/(V−k)), o = 1 − m/k."""
    overlap = 1.0 - missing / k
    near = np.log(np.maximum(np.minimum(p_k, rest / (missing + 1)), _TINY))
    tail = np.log(np.maximum(np.minimum(p_k, rest / max(vocab - k, 1)), _TINY))
    return np.exp(overlap * near + (1.0 - overlap) * tail)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Σ p ln(p / q) per row with 0 ln 0 = 0 (q floored at _TINY)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.maximum(p, _TINY)) - np.log(np.maximum(q, _TINY))), 0.0)
    return np.maximum(terms.sum(axis=1), 0.0)


def doc_sums(per_token: np.ndarray, lengths: Sequence[int]) -> np.ndarray:
    """Per-document sums of a per-token array laid out document after document."""
    bounds = np.cumsum([0, *lengths])
    return np.array([per_token[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
