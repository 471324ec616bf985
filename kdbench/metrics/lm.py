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
tokens of GSM8K test solutions, k = 128; tests/integration/backends/test_language_modeling.py re-measures it):
a 24-of-30-layer student (exact KL 2.13): forward KL −1 %, reverse KL −9 %, TVD −0.012;
an 8-of-30-layer student (exact KL 9.2, TVD 0.97): forward KL −2 %, reverse KL −21 %, TVD −0.022;
the teacher in bf16 against fp32 (KL 0.0008): KL −4 %, TVD −0.0004. α = 1 − TVD on the coarsened
distributions, so its absolute error is TVD's. The shared-support alternative (cells only for ids
in both top k) underestimates far more (forward KL −34 % for the 24-layer student).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kdbench.errors import KdbenchError
from kdbench.metrics.loyalty import expected_tokens_per_call
from kdbench.metrics.spec import Kind, Table, register_kind, statistic
from kdbench.metrics.stats import Resampled, percentile_ci

_TINY = 1e-30  # floor for probabilities inside logs (KL of a coarsened cell with zero mass)
_CHUNK_CELLS = 2**24  # k × k id comparisons per position: positions per block = this / k²


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


# --------------------------------------------------------------------------------------------------
# tables: per-document sums (a ratio estimator resamples documents and divides resampled sums)
# --------------------------------------------------------------------------------------------------
class DocumentContext(Resampled):
    """Per-document columns and their resampled sums (one set of draws for every metric)."""

    def __init__(self, columns: dict[str, np.ndarray], *, n_samples, seed, draws=None, means: dict | None = None):
        self.names = list(columns)
        self.matrix = np.column_stack([columns[c] for c in self.names])
        self.totals = {c: np.sum(v) for c, v in columns.items()}
        self.means = means or {}  # exact token means, when the per-token values were at hand
        super().__init__(len(self.matrix), n_samples=n_samples, seed=seed, draws=draws)

    @cached_property
    def _resampled(self) -> np.ndarray:
        return self.column_sums("documents", self.matrix)

    def resampled(self, column: str) -> np.ndarray:
        return self._resampled[:, self.names.index(column)]

    def ratio(self, num: str, den: str) -> float:
        if num in self.means:
            return self.means[num]
        return float(self.totals[num] / self.totals[den])

    def ratio_samples(self, num: str, den: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.resampled(num) / self.resampled(den)


def _doc_column(rows, column: str, where: str) -> np.ndarray:
    if rows is None or column not in rows.columns or rows[column].isna().any():
        raise KdbenchError(f"{where}: the samples have no per-document column {column!r} (written by kdbench since "
                           "the metric registry; re-run to gate this metric)")
    return np.asarray(rows[column], dtype=np.float64)


@dataclass
class LmTable(Table):
    """Per document: natural-log NLL of its tokens, its token count, its UTF-8 bytes."""

    kind = "lm"
    nll: np.ndarray
    tokens: np.ndarray
    bytes: np.ndarray | None

    @property
    def n(self) -> int:
        return len(self.nll)

    @classmethod
    def of(cls, preds, task_spec: dict) -> LmTable:
        if preds.tokens.sum() == 0:
            raise KdbenchError(f"task {preds.task}: the evaluation texts have no tokens")
        return cls(preds.nll, preds.tokens, preds.n_bytes)

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> LmTable:
        n_bytes = _doc_column(rows, "bytes", where) if "bytes" in rows.columns else None
        return cls(_doc_column(rows, "nll", where), _doc_column(rows, "tokens", where), n_bytes)

    def has(self, metric: str) -> bool:
        return self.bytes is not None or metric != "bits_per_byte"

    def columns(self) -> dict[str, np.ndarray]:
        return {"bytes": np.asarray(self.bytes, dtype=np.int64)}

    def context(self, *, n_samples, seed, options, draws=None) -> DocumentContext:
        columns = {"nll": self.nll, "tokens": self.tokens}
        if self.bytes is not None:
            columns["bytes"] = self.bytes
        return DocumentContext(columns, n_samples=n_samples, seed=seed, draws=draws)


# eval.generated_text reports the pair metrics again on each model's own text and on the teacher's
# (kdbench.tasks.generated_text) as ``<metric>_on_<text>``; their per-token values are not kept in
# samples.parquet yet, so the gate lists them as not gated rather than testing them
GENERATED_TEXTS = ("own_text", "teacher_text")


def on_generated_text(name: str) -> bool:
    return any(name.endswith(f"_on_{text}") for text in GENERATED_TEXTS)


TOKEN_KEYS = {  # pair metric -> per-token key of topk_token_metrics
    "top1_agreement": "top1_agreement", "kl_teacher_student": "forward_kl", "reverse_kl": "reverse_kl",
    "tvd": "tvd", "acceptance_rate": "acceptance_rate",
}


@dataclass
class LmPairTable(Table):
    """Per document: the sums over its tokens of each per-token teacher–student metric
    (samples.parquet: ``<metric>_sum``) and its token count; documents without tokens carry no
    weight and are left out of the resampling."""

    kind = "lm_pair"
    sums: dict[str, np.ndarray]
    tokens: np.ndarray
    means: dict[str, float] | None = None  # the token means, from Predictions (the sums' ratio up to rounding)

    @property
    def n(self) -> int:
        return int(np.sum(self.tokens > 0))

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> LmPairTable:
        same_tokens = student.vocab_size == teacher.vocab_size and all(
            np.array_equal(a, b) for a, b in zip(student.token_ids, teacher.token_ids))
        if not same_tokens:
            raise KdbenchError(
                f"task {student.task}: {student.role} and {teacher.role} tokenise the texts differently (vocabularies "
                f"{student.vocab_size} and {teacher.vocab_size}); token-level pair metrics need one tokenizer")
        if student.top_k != teacher.top_k:
            raise KdbenchError(f"task {student.task}: top-k differs ({student.top_k} vs {teacher.top_k})")
        per_token = topk_token_metrics(
            np.concatenate(teacher.topk_ids), np.concatenate(teacher.topk_logprobs), np.concatenate(teacher.rest_mass),
            np.concatenate(student.topk_ids), np.concatenate(student.topk_logprobs), np.concatenate(student.rest_mass),
            teacher.vocab_size)
        lengths = teacher.tokens
        return cls({name: doc_sums(per_token[key], lengths) for name, key in TOKEN_KEYS.items()},
                   lengths.astype(np.float64), {name: float(per_token[key].mean()) for name, key in TOKEN_KEYS.items()})

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> LmPairTable:
        return cls({name: _doc_column(pair_rows, f"{name}_sum", where) for name in TOKEN_KEYS},
                   _doc_column(teacher_rows, "tokens", where))

    def columns(self) -> dict[str, np.ndarray]:
        return {f"{name}_sum": v for name, v in self.sums.items()}

    def context(self, *, n_samples, seed, options, draws=None) -> DocumentContext:
        keep = self.tokens > 0
        return DocumentContext({**{k: v[keep] for k, v in self.sums.items()}, "tokens": self.tokens[keep]},
                               n_samples=n_samples, seed=seed, draws=draws, means=self.means)


register_kind(Kind("lm", "document", "per-token log-probabilities of held-out text", table=LmTable, pair="lm_pair",
                   columns=("bits_per_byte",)))
register_kind(Kind("lm_pair", "document", "teacher and student top-k next-token distributions", table=LmPairTable,
                   columns=("top1_agreement", "acceptance_rate")))


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
DOCUMENT = "(NLL, tokens) of the document"


@statistic("perplexity", "lm", higher_is_better=False, per_unit=DOCUMENT, reference="lm-eval's token perplexity",
           replicates=lambda ctx: np.exp(ctx.ratio_samples("nll", "tokens")))
def perplexity(ctx):
    """Token perplexity exp(Σ_d NLL_d / Σ_d n_d), NLL_d = −Σ_t ln p(x_t | x_<t) over document d's n_d tokens (each
    token scored once, in disjoint windows of max_length tokens)."""
    return float(np.exp(ctx.totals["nll"] / ctx.totals["tokens"]))


@statistic("bits_per_byte", "lm", higher_is_better=False, per_unit="(NLL, UTF-8 bytes) of the document",
           reference="Gao et al. 2020 (the Pile)", replicates=lambda ctx: ctx.ratio_samples("nll", "bytes") / math.log(2))
def bits_per_byte(ctx):
    """Σ_d NLL_d / (ln 2 · Σ_d bytes_d), bytes the UTF-8 size of the text: comparable across tokenizers."""
    return float(ctx.totals["nll"] / (math.log(2) * ctx.totals["bytes"]))


def _token_metric(name: str, higher: bool, per_token: str, doc: str, reference: str = "—") -> None:
    def point(ctx):
        return ctx.ratio(name, "tokens")

    point.__doc__ = doc
    statistic(name, "lm_pair", higher_is_better=higher, per_unit=f"(Σ over its tokens of {per_token}, tokens) of the "
              "document", reference=reference, replicates=lambda ctx: ctx.ratio_samples(name, "tokens"))(point)


_token_metric("top1_agreement", True, "1[argmax p_t = argmax p_s]", "Token mean of 1[argmax p_t = argmax p_s] (exact).")
_token_metric("kl_teacher_student", False, "KL(p_t ‖ p_s)", "Token mean of KL(p_t ‖ p_s) on the top-k union plus a rest "
              "bucket (an approximation; its measured error is in kdbench/metrics/lm.py).")
_token_metric("reverse_kl", False, "KL(p_s ‖ p_t)", "Token mean of KL(p_s ‖ p_t) on the top-k union plus a rest bucket.")
_token_metric("tvd", False, "½ Σ_y |p_t(y) − p_s(y)|", "Token mean of ½ Σ_y |p_t(y) − p_s(y)| on the top-k union plus "
              "a rest bucket.")
_token_metric("acceptance_rate", True, "Σ_y min(p_t(y), p_s(y))", "α = token mean of Σ_y min(p_t(y), p_s(y)): the "
              "probability that speculative sampling accepts a draft token from the student with the teacher as target.",
              "Leviathan et al. 2023, §3.5")


def _gamma(fields: dict, task_spec: dict) -> str | None:
    return None if fields["g"].isdigit() and int(fields["g"]) >= 1 else f"γ = {fields['g']!r} is not a positive whole number"


def _expected_tokens_ci(ctx, confidence: float, g: str) -> list[float] | None:
    # increasing in α: the CI of α mapped endpoint by endpoint
    lo, hi = percentile_ci(ctx.ratio_samples("acceptance_rate", "tokens"), confidence)
    return [float(expected_tokens_per_call(lo, int(g))), float(expected_tokens_per_call(hi, int(g)))]


@statistic("expected_tokens_gamma_{g}", "lm_pair", higher_is_better=True,
           per_unit="(Σ over its tokens of Σ_y min(p_t, p_s), tokens) of the document", check=_gamma,
           reference="Leviathan et al. 2023, eq. 1",
           replicates=lambda ctx, g: expected_tokens_per_call(ctx.ratio_samples("acceptance_rate", "tokens"), int(g)),
           interval=_expected_tokens_ci)
def expected_tokens(ctx, g):
    """(1 − α^{γ+1}) / (1 − α) (γ + 1 at α = 1): the expected tokens produced per target-model call with γ draft
    tokens at the mean acceptance rate α; its CI maps α's CI through this increasing function."""
    return float(expected_tokens_per_call(ctx.ratio("acceptance_rate", "tokens"), int(g)))
