"""Per-example outputs of one model on one task, kept for the whole run (DESIGN.md, "Core objects").

Every teacher–student metric is computed from two Predictions, never by re-running a model.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class ClassifierPredictions:
    task: str
    role: str
    example_ids: list[str]
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

    def aligned_with(self, other: "ClassifierPredictions") -> None:
        """Pairwise metrics need the same examples in the same order."""
        if self.example_ids != other.example_ids:
            raise ValueError(f"{self.task}: {self.role} and {other.role} predictions cover different examples")

    def to_frame(self) -> pd.DataFrame:
        """Rows of ``samples.parquet``: task, example_id, role, label, pred, probs, correct."""
        correct = self.correct
        return pd.DataFrame(
            {
                "task": self.task,
                "example_id": self.example_ids,
                "role": self.role,
                "label": pd.array(self.labels, dtype="Int64") if self.labels is not None else pd.NA,
                "pred": self.preds.astype(np.int64),
                "probs": [row.astype(float).tolist() for row in self.probs],
                "correct": pd.array(correct, dtype="boolean") if correct is not None else pd.NA,
            }
        )
