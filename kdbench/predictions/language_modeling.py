"""Predictions of language-modelling tasks: per document, the log-probability of each of its tokens
and the model's top-k next-token distribution at each position (enough for perplexity and for
teacher–student token metrics without the full vocabulary)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from kdbench.predictions.base import Predictions
from kdbench.predictions.generated import GeneratedText


@dataclass
class LanguageModelingPredictions(Predictions):
    """Per document d (T_d predicted tokens): ``token_ids[d]`` (T_d,), ``token_logprobs[d]`` (T_d,)
    natural-log probabilities of the actual tokens, ``topk_ids[d]`` / ``topk_logprobs[d]`` (T_d, k)
    and ``rest_mass[d]`` (T_d,) = 1 − Σ top-k probabilities; ``n_bytes[d]`` the UTF-8 size of the
    text; ``vocab_size`` the model's output vocabulary."""

    kind: ClassVar[str] = "lm"
    token_ids: list[np.ndarray]
    token_logprobs: list[np.ndarray]
    topk_ids: list[np.ndarray]
    topk_logprobs: list[np.ndarray]
    rest_mass: list[np.ndarray]
    n_bytes: np.ndarray
    vocab_size: int
    generated: GeneratedText | None = field(default=None, repr=False)  # eval.generated_text: continuations and scores

    def __post_init__(self) -> None:
        n = len(self.example_ids)
        arrays = (self.token_ids, self.token_logprobs, self.topk_ids, self.topk_logprobs, self.rest_mass)
        if any(len(a) != n for a in arrays) or len(self.n_bytes) != n:
            raise ValueError(f"{self.task}: per-document arrays do not match {n} examples")
        for i in range(n):
            t = len(self.token_ids[i])
            if not (len(self.token_logprobs[i]) == len(self.topk_ids[i]) == len(self.topk_logprobs[i])
                    == len(self.rest_mass[i]) == t):
                raise ValueError(f"{self.task}: document {self.example_ids[i]} has inconsistent token arrays")

    @property
    def tokens(self) -> np.ndarray:
        """Predicted tokens per document."""
        return np.array([len(t) for t in self.token_ids], dtype=np.int64)

    @property
    def nll(self) -> np.ndarray:
        """Negative log-likelihood (nats) per document: −Σ_t ln p(x_t | x_<t)."""
        return np.array([-float(np.sum(lp)) for lp in self.token_logprobs])

    @property
    def top_k(self) -> int:
        return int(self.topk_ids[0].shape[1]) if self.topk_ids else 0

    def doc_perplexity(self) -> np.ndarray:
        """exp(NLL_d / T_d) per document (nan for a document without tokens)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.exp(self.nll / self.tokens)

    def to_frame(self) -> pd.DataFrame:
        """``samples.parquet`` rows: no label, pred = the document's perplexity, no probabilities,
        correct NA; plus ``tokens`` and ``nll`` (so corpus perplexity can be recomputed)."""
        return self.frame(pd.NA, self.doc_perplexity().astype(float), tokens=self.tokens, nll=self.nll)
