"""Predictions of sequence classifiers (class probabilities) and regressors (one score each)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from kdbench.predictions.base import Predictions


@dataclass
class ClassifierPredictions(Predictions):
    kind: ClassVar[str] = "classifier"
    probs: np.ndarray  # (n, classes), rows sum to 1
    labels: np.ndarray | None  # (n,) gold class ids, when known

    def __post_init__(self) -> None:
        if self.probs.ndim != 2 or len(self.probs) != len(self.example_ids):
            raise ValueError(f"probs shape {self.probs.shape} does not match {len(self.example_ids)} examples")

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray | None:
        return None if self.labels is None else self.preds == self.labels

    def to_frame(self) -> pd.DataFrame:
        """Rows of ``samples.parquet``: task, example_id, role, label, pred, probs, correct."""
        return self.frame(pd.array(self.labels, dtype="Int64") if self.labels is not None else pd.NA,
                          self.preds.astype(np.int64), [row.astype(float).tolist() for row in self.probs], self.correct)


@dataclass
class RegressionPredictions(Predictions):
    kind: ClassVar[str] = "regression"
    scores: np.ndarray  # (n,) predicted values
    labels: np.ndarray | None  # (n,) gold values, when known

    def __post_init__(self) -> None:
        if self.scores.ndim != 1 or len(self.scores) != len(self.example_ids):
            raise ValueError(f"scores shape {self.scores.shape} does not match {len(self.example_ids)} examples")

    def to_frame(self) -> pd.DataFrame:
        return self.frame(self.labels.astype(float) if self.labels is not None else np.nan, self.scores.astype(float))
