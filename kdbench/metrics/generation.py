"""Metrics of generative tasks with a final answer (GSM8K): exact match and extraction rate of one
model, answer agreement of a student with its teacher. Answers are extracted and normalised by
:mod:`kdbench.metrics.answers`; every metric is a mean of per-question 0/1 outcomes, with a
percentile bootstrap CI over questions and the exact McNemar test between two runs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdbench.errors import KdbenchError
from kdbench.metrics.spec import Kind, Table, metric, register_kind
from kdbench.metrics.stats import ColumnContext


def answers_from_samples(rows) -> list[str | None]:
    """Extracted answers of ``samples.parquet`` rows (null where none was extracted)."""
    return [None if pd.isna(a) else str(a) for a in rows["pred"]]


def agreement(student: list[str | None], teacher: list[str | None]) -> np.ndarray:
    """1[both extracted an answer and they are equal] per question."""
    return np.array([s is not None and s == t for s, t in zip(student, teacher, strict=True)], dtype=np.float64)


@dataclass
class GenerationTable(Table):
    kind = "generation"
    correct: np.ndarray  # 1[extracted answer = gold answer]
    extracted: np.ndarray  # 1[an answer was extracted]

    @property
    def n(self) -> int:
        return len(self.correct)

    @classmethod
    def of(cls, preds, task_spec: dict) -> GenerationTable:
        return cls(preds.correct.astype(np.float64), preds.extracted.astype(np.float64))

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> GenerationTable:
        if rows["correct"].isna().any():
            raise KdbenchError(f"{where}: the samples have questions without a 'correct' value")
        extracted = np.array([a is not None for a in answers_from_samples(rows)], dtype=np.float64)
        return cls(np.asarray(rows["correct"], dtype=np.float64), extracted)

    def context(self, *, n_samples, seed, options, draws=None) -> ColumnContext:
        return ColumnContext({"correct": self.correct, "extracted": self.extracted}, self.n, n_samples=n_samples,
                             seed=seed, draws=draws)

    def trivial(self) -> GenerationTable:
        """No answer, ever."""
        return GenerationTable(np.zeros(self.n), np.zeros(self.n))


@dataclass
class GenerationPairTable(Table):
    kind = "generation_pair"
    agree: np.ndarray

    @property
    def n(self) -> int:
        return len(self.agree)

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> GenerationPairTable:
        return cls(agreement(student.answers, teacher.answers))

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> GenerationPairTable:
        return cls(agreement(answers_from_samples(student_rows), answers_from_samples(teacher_rows)))

    def context(self, *, n_samples, seed, options, draws=None) -> ColumnContext:
        return ColumnContext({"agree": self.agree}, self.n, n_samples=n_samples, seed=seed, draws=draws)


register_kind(Kind("generation", "question", "generated texts, their extracted final answers and the gold answers",
                   table=GenerationTable, pair="generation_pair", compare="exact_match", columns=("extraction_rate",)))
register_kind(Kind("generation_pair", "question", "the teacher's and the student's extracted answers",
                   table=GenerationPairTable, columns=("answer_agreement",)))


@metric("exact_match", "generation", higher_is_better=True, percent=True, binary=True,
        per_unit="1[extracted answer = gold answer]", reference="Cobbe et al. 2021")
def exact_match(ctx):
    """(1/N) Σ_i 1[â_i = a_i]: the normalised number extracted from the generation (after the last '####' or 'the
    answer is', else its last number) equals the gold one; a generation without a number is wrong."""
    return ctx.columns["correct"]


@metric("extraction_rate", "generation", higher_is_better=True, percent=True, binary=True,
        per_unit="1[the generation holds a number]")
def extraction_rate(ctx):
    """(1/N) Σ_i 1[a final answer could be extracted from generation i]."""
    return ctx.columns["extracted"]


@metric("answer_agreement", "generation_pair", higher_is_better=True, percent=True, binary=True,
        per_unit="1[student and teacher extracted the same answer]")
def answer_agreement(ctx):
    """(1/N) Σ_i 1[â_s,i = â_t,i]: both extracted an answer and they are the same (an unextracted answer agrees with
    nothing)."""
    return ctx.columns["agree"]
