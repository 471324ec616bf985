"""Language modelling on held-out text: perplexity and bits per byte of each model, and per-token
teacher–student agreement (top-1 agreement, forward/reverse KL, TVD, speculative-decoding
acceptance rate and expected tokens per target call).

Every token of every document is scored once, the first conditioned on the prefix token (BOS, or
EOS without one), in disjoint windows of ``max_length`` tokens (lm-eval's rolling log-likelihood).
Models keep their top-``top_k`` next-token distribution per position; the pair metrics are
computed from those (union of the two top-k supports plus a rest bucket, an approximation whose
error is documented and measured in :mod:`kdbench.metrics.lm`). Teacher and student must share a
tokenizer (the same token sequence for every document), or the token metrics mean nothing.

Metrics (formulas in :mod:`kdbench.metrics.lm`): ``perplexity`` = exp(Σ NLL / Σ tokens),
``bits_per_byte`` = Σ NLL / (ln 2 · Σ UTF-8 bytes). Pair metrics: token means of
``top1_agreement``, ``kl_teacher_student`` KL(p_t ‖ p_s), ``reverse_kl`` KL(p_s ‖ p_t), ``tvd``,
``acceptance_rate`` α = Σ_y min(p_t, p_s), and ``expected_tokens_gamma_<γ>`` = (1 − α^{γ+1})/(1 − α)
for γ = 1..8 (Leviathan et al. 2023). Every CI resamples documents (a ratio estimator: Σ over the
resampled documents' tokens / their token count). These are teacher-forced on the gold text; with
``eval.generated_text`` the same metrics on each model's own continuations of the texts' first
tokens, and on the teacher's, are added (:mod:`kdbench.tasks.generated_text`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from kdbench.backends import engines
from kdbench.data import LoadedSplit
from kdbench.errors import KdbenchError
from kdbench.metrics import lm as lm_metrics
from kdbench.metrics.loyalty import expected_tokens_per_call
from kdbench.metrics.stats import percentile_ci
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions.generated import GeneratedText
from kdbench.predictions.language_modeling import LanguageModelingPredictions
from kdbench.tasks import generated_text
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel

MAX_GAMMA = 8
METRICS = ("perplexity", "bits_per_byte")
TOKEN_METRICS = {  # pair metric -> key of kdbench.metrics.lm.topk_token_metrics
    "top1_agreement": "top1_agreement",
    "kl_teacher_student": "forward_kl",
    "reverse_kl": "reverse_kl",
    "tvd": "tvd",
    "acceptance_rate": "acceptance_rate",
}
GAMMA_METRICS = tuple(f"expected_tokens_gamma_{g}" for g in range(1, MAX_GAMMA + 1))
PAIR_METRICS = (*TOKEN_METRICS, *GAMMA_METRICS)


class TextColumns(StrictModel):
    text: str = "text"
    id: str | None = Field(None, description="stable document id column; row number when absent")


class LanguageModelingSpec(TaskSpecBase):
    columns: TextColumns = Field(default_factory=TextColumns)
    top_k: int = Field(128, gt=0, description="next-token distribution kept per position for the pair metrics")


@dataclass
class TextData:
    split: LoadedSplit
    texts: list[str]
    ids: list[str]


class LanguageModelingTask(Task):
    family = "language_modeling"
    head = "causal_lm"
    Spec = LanguageModelingSpec

    @classmethod
    def check_spec(cls, spec: LanguageModelingSpec) -> tuple[tuple, str] | None:
        return unknown_metric(spec, "language-modelling", METRICS, PAIR_METRICS)

    # data ---------------------------------------------------------------------------------------
    def load_data(self, split: str, rows: int | None = None, shuffle_seed: int | None = None) -> TextData:
        cols = self.spec.columns
        loaded = self.load(split, rows, shuffle_seed, [cols.text, cols.id])
        texts = [str(t) if t is not None else "" for t in loaded.rows[cols.text]]
        ids = [str(x) for x in (loaded.rows[cols.id] if cols.id else range(len(texts)))]
        return TextData(loaded, texts, ids)

    def train_data(self, rows: int | None, seed: int) -> TextData:
        if self.spec.dataset.train_split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined")
        return self.load_data(self.spec.dataset.train_split, rows, shuffle_seed=seed)

    def eval_data(self, rows: int | None) -> TextData:
        return self.load_data(self.spec.dataset.eval_split, rows)

    def training_texts(self, split: TextData, tokenizer=None) -> list[str]:
        """Plain texts, every token scored (the recipe's ("", text) pairs); empty ones dropped."""
        return [t for t in split.texts if t.strip()]

    def dataset_record(self, data: TextData) -> dict:
        d = self.spec.dataset
        return {"id": d.id, "config": d.config, "split": data.split.spec.split, "rows": len(data.texts),
                "sha256": data.split.sha256(), "source": data.split.source,
                "bytes": int(sum(len(t.encode("utf-8")) for t in data.texts))}

    # models and predictions ----------------------------------------------------------------------
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        return LoadedModel(load_for_head(model_id, self.head, revision, device).eval(), load_tokenizer(model_id, revision), model_id)

    def predict(self, model: LoadedModel, data: TextData, role: str, settings: RunSettings) -> LanguageModelingPredictions:
        with engines.for_task(model, settings, self.max_length(settings)) as backend:
            dists = backend.token_distributions(data.texts, self.spec.top_k)
            own = None if settings.eval.generated_text is None else self._generate(backend, data, role, settings)
        preds = LanguageModelingPredictions(
            self.name, role, data.ids,
            token_ids=[d.token_ids for d in dists], token_logprobs=[d.token_logprobs for d in dists],
            topk_ids=[d.topk_ids.astype(np.int32) for d in dists], topk_logprobs=[d.topk_logprobs for d in dists],
            rest_mass=[d.rest_mass for d in dists],
            n_bytes=np.array([len(t.encode("utf-8")) for t in data.texts], dtype=np.int64),
            vocab_size=backend.vocab_size,
        )
        preds.generated = own
        return preds

    def _generate(self, backend, data: TextData, role: str, settings: RunSettings):
        """``eval.generated_text``: the model continues the first ``prompt_tokens`` tokens (after the
        start token) of each of the first ``rows`` texts longer than that, greedily, and scores its
        continuation (compared with the teacher's in the pair step)."""
        cfg = settings.eval.generated_text
        if 1 + cfg.prompt_tokens + cfg.max_new_tokens > backend.max_length:
            raise KdbenchError(f"task {self.name}: eval.generated_text: prompt_tokens {cfg.prompt_tokens} + max_new_tokens "
                               f"{cfg.max_new_tokens} exceed max_length {backend.max_length}")
        ids, prompts = [], []
        for example_id, text in zip(data.ids, data.texts):
            tokens = backend.encode(text)
            if len(tokens) > cfg.prompt_tokens:
                ids.append(example_id)
                prompts.append([backend.prefix_token_id] + tokens[: cfg.prompt_tokens])
            if cfg.rows is not None and len(ids) == cfg.rows:
                break
        if not ids:
            raise KdbenchError(f"task {self.name}: eval.generated_text: no evaluation text is longer than prompt_tokens "
                               f"{cfg.prompt_tokens}")
        return GeneratedText(role, ids, prompts, [np.asarray(t, dtype=np.int64)
                                                  for t in backend.generate_ids(prompts, cfg.max_new_tokens)])

    def efficiency_inputs(self, data: TextData) -> tuple[list[str], list[str] | None]:
        return data.texts, None

    # metrics ------------------------------------------------------------------------------------
    def score(self, preds: LanguageModelingPredictions, settings: RunSettings) -> dict[str, dict]:
        cfg = settings.eval
        nll, tokens = preds.nll, preds.tokens
        if tokens.sum() == 0:
            raise KdbenchError(f"task {self.name}: the evaluation texts have no tokens")
        out = {}
        if "perplexity" in self.spec.metrics:
            out["perplexity"] = lm_metrics.perplexity_with_ci(nll, tokens, cfg.bootstrap_samples, cfg.confidence, settings.seed)
        if "bits_per_byte" in self.spec.metrics:
            out["bits_per_byte"] = lm_metrics.bits_per_byte_with_ci(nll, preds.n_bytes, cfg.bootstrap_samples,
                                                                     cfg.confidence, settings.seed)
        return {m: out[m] for m in self.spec.metrics}

    def score_pair(self, student: LanguageModelingPredictions, teacher: LanguageModelingPredictions,
                   settings: RunSettings) -> dict[str, dict]:
        student.aligned_with(teacher)
        same_tokens = student.vocab_size == teacher.vocab_size and all(
            np.array_equal(a, b) for a, b in zip(student.token_ids, teacher.token_ids))
        if not same_tokens:
            raise KdbenchError(
                f"task {self.name}: {student.role} and {teacher.role} tokenise the texts differently "
                f"(vocabularies {student.vocab_size} and {teacher.vocab_size}); token-level pair metrics need one tokenizer")
        if student.top_k != teacher.top_k:
            raise KdbenchError(f"task {self.name}: top-k differs ({student.top_k} vs {teacher.top_k})")
        out = {}
        if self.spec.pair_metrics:
            per_token = lm_metrics.topk_token_metrics(
                np.concatenate(teacher.topk_ids), np.concatenate(teacher.topk_logprobs), np.concatenate(teacher.rest_mass),
                np.concatenate(student.topk_ids), np.concatenate(student.topk_logprobs), np.concatenate(student.rest_mass),
                teacher.vocab_size)
            out = token_pair_metrics(per_token, teacher.tokens, self.spec.pair_metrics, settings)
        if student.generated is not None and teacher.generated is not None:
            out.update(generated_text.pair_metrics(student.generated, teacher.generated, settings))
        return out


def token_pair_metrics(per_token: dict[str, np.ndarray], lengths: np.ndarray, names: list[str],
                       settings: RunSettings) -> dict[str, dict]:
    """Token means of the per-token metrics with document-bootstrap CIs, and the expected tokens
    per target call from the mean acceptance rate (its CI maps α's CI through the increasing
    function (1 − α^{γ+1})/(1 − α))."""
    cfg = settings.eval
    lengths = np.asarray(lengths)
    keep = lengths > 0  # documents without tokens carry no weight
    out = {}
    for name, key in TOKEN_METRICS.items():
        if name not in names and not (name == "acceptance_rate" and any(n in GAMMA_METRICS for n in names)):
            continue
        sums = lm_metrics.doc_sums(per_token[key], lengths)[keep]
        samples = lm_metrics.bootstrap_ratio_samples(sums, lengths[keep], cfg.bootstrap_samples, settings.seed)
        lo, hi = percentile_ci(samples, cfg.confidence)
        out[name] = {"value": float(per_token[key].mean()), "ci": [lo, hi]}
    if "acceptance_rate" in out:
        alpha, (lo, hi) = out["acceptance_rate"]["value"], out["acceptance_rate"]["ci"]
        for g in range(1, MAX_GAMMA + 1):
            out[f"expected_tokens_gamma_{g}"] = {
                "value": float(expected_tokens_per_call(alpha, g)),
                "ci": [float(expected_tokens_per_call(lo, g)), float(expected_tokens_per_call(hi, g))]}
    return {m: out[m] for m in names}
