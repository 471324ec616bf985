"""Predictions of generative tasks: the generated text, the final answer extracted from it and the
gold answer, per example."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from kdbench.predictions.base import Predictions
from kdbench.predictions.generated import GeneratedText


@dataclass
class GenerationPredictions(Predictions):
    """``answers[i]`` is the normalised answer extracted from ``generations[i]`` (None when the text
    holds none); ``gold[i]`` the normalised gold answer (None when the dataset has none);
    ``generated`` the first generations as token ids with the top-k rows models give them
    (``eval.generated_text``)."""

    kind: ClassVar[str] = "generation"
    generations: list[str]
    answers: list[str | None]
    gold: list[str | None]
    generated: GeneratedText | None = field(default=None, repr=False)  # eval.generated_text: token ids and scores

    def __post_init__(self) -> None:
        n = len(self.example_ids)
        if not len(self.generations) == len(self.answers) == len(self.gold) == n:
            raise ValueError(f"{self.task}: generations, answers and gold do not match {n} examples")

    @property
    def correct(self) -> np.ndarray:
        """1[extracted answer = gold answer] per example (an unextracted answer is wrong)."""
        return np.array([a is not None and a == g for a, g in zip(self.answers, self.gold)], dtype=bool)

    @property
    def extracted(self) -> np.ndarray:
        return np.array([a is not None for a in self.answers], dtype=bool)

    def to_frame(self) -> pd.DataFrame:
        """``samples.parquet`` rows: label = gold answer, pred = extracted answer (strings), no
        probabilities, correct = exact match, and the full ``generation``."""
        return pd.DataFrame(
            {
                "task": self.task,
                "example_id": self.example_ids,
                "role": self.role,
                "label": pd.array(self.gold, dtype="string"),
                "pred": pd.array(self.answers, dtype="string"),
                "probs": [[] for _ in self.example_ids],
                "correct": pd.array(self.correct, dtype="boolean"),
                "generation": self.generations,
            }
        )
