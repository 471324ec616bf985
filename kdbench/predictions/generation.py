"""Predictions of generative tasks: the generated text, the final answer extracted from it and the
gold answer, per example (the reasoning family's; the lm-eval bridge's add lm-eval's own per-document
metrics: :class:`kdbench.predictions.lm_eval.LmEvalGenerationPredictions`). An answer is None where
none could be extracted, so two unextracted answers never agree (``answer_agreement``)."""
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
        probabilities, correct = exact match (NA where unknown), and the full ``generation``."""
        return self.frame(pd.array(self.gold, dtype="string"), pd.array(self.answers, dtype="string"), correct=self.correct,
                          generation=self.generations)
