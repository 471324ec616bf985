"""Predictions of token classifiers (NER): per sentence, one tag distribution per word."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from kdbench.predictions.base import Predictions


@dataclass
class TokenPredictions(Predictions):
    """Word-level outputs of one model on one task.

    ``probs[i]`` is (words of sentence i, classes): the tag distribution read at each word's first
    sub-token. ``seen[i]`` is False for words the model never saw (cut by ``max_length``, or words
    the tokenizer turns into no sub-token at all, such as a lone variation selector); their row is
    one-hot on ``O``, so they count as predicted ``O`` everywhere and gold entities there are misses,
    never dropped from the metric. ``labels[i]`` holds the gold class ids, when known.
    """

    kind: ClassVar[str] = "ner"
    label_names: list[str]
    probs: list[np.ndarray]
    seen: list[np.ndarray]
    labels: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        n = len(self.example_ids)
        if not (len(self.probs) == len(self.seen) == n and (self.labels is None or len(self.labels) == n)):
            raise ValueError(f"{self.task}: per-sentence arrays do not match {n} examples")
        k = len(self.label_names)
        for i, (p, s) in enumerate(zip(self.probs, self.seen)):
            if p.ndim != 2 or p.shape[1] != k or len(s) != len(p) or (self.labels is not None and len(self.labels[i]) != len(p)):
                raise ValueError(f"{self.task}: sentence {self.example_ids[i]} has inconsistent word arrays")

    @property
    def pred_ids(self) -> list[np.ndarray]:
        return [p.argmax(axis=1) for p in self.probs]

    def tags(self, ids: list[np.ndarray]) -> list[list[str]]:
        return [[self.label_names[j] for j in row] for row in ids]

    @property
    def pred_tags(self) -> list[list[str]]:
        return self.tags(self.pred_ids)

    @property
    def gold_tags(self) -> list[list[str]] | None:
        return None if self.labels is None else self.tags(self.labels)

    @property
    def word_counts(self) -> np.ndarray:
        return np.array([len(p) for p in self.probs], dtype=np.int64)

    def aligned_with(self, other: Predictions) -> None:
        super().aligned_with(other)
        if isinstance(other, TokenPredictions) and not np.array_equal(self.word_counts, other.word_counts):
            raise ValueError(f"{self.task}: {self.role} and {other.role} predictions split sentences into different words")

    def to_frame(self) -> pd.DataFrame:
        """Rows of ``samples.parquet``: label = gold tags joined by spaces, pred = predicted tags
        joined by spaces, probs empty, correct = every tag of the sentence right."""
        preds = self.pred_ids
        gold = self.gold_tags
        return self.frame([" ".join(t) for t in gold] if gold is not None else None,
                          [" ".join(t) for t in self.tags(preds)],
                          correct=[bool(np.array_equal(p, y)) for p, y in zip(preds, self.labels)]
                          if self.labels is not None else None)
