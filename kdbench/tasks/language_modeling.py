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
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions.generated import GeneratedText
from kdbench.predictions.language_modeling import LanguageModelingPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel


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


@FAMILIES.register("language_modeling", head="causal_lm", kind="lm")
class LanguageModelingTask(Task):
    Spec = LanguageModelingSpec

    @classmethod
    def check_spec(cls, spec: LanguageModelingSpec) -> tuple[tuple, str] | None:
        return unknown_metric(spec)

    # data ---------------------------------------------------------------------------------------
    def load_data(self, split: str, rows: int | None = None, shuffle_seed: int | None = None) -> TextData:
        cols = self.spec.columns
        loaded = self.load(split, rows, shuffle_seed, [cols.text, cols.id])
        texts = [str(t) if t is not None else "" for t in loaded.rows[cols.text]]
        ids = [str(x) for x in (loaded.rows[cols.id] if cols.id else range(len(texts)))]
        return TextData(loaded, texts, ids)

    def train_data(self, rows: int | None, seed: int) -> TextData:
        if self.spec.dataset.train_split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined (dataset.train_split)")
        return self.load_data(self.spec.dataset.train_split, rows, shuffle_seed=seed)

    def eval_data(self, rows: int | None) -> TextData:
        return self.load_data(self.spec.dataset.eval_split, rows)

    def training_texts(self, split: TextData, tokenizer=None) -> list[str]:
        """Plain texts, every token scored (the recipe's ("", text) pairs); empty ones dropped."""
        return [t for t in split.texts if t.strip()]

    def dataset_record(self, data: TextData) -> dict:
        return {**data.split.reference(), "rows": len(data.texts),
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
