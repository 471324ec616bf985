"""Metrics of regression heads (GLUE STS-B): Pearson and Spearman correlation with gold scores,
mean squared error; teacher–student regression loyalty.

CIs are percentile bootstraps over examples: Efron resamples (seeded, vectorised: one index matrix
for all resamples) on which each statistic is evaluated as it is on the whole set; Spearman re-ranks
each resample with average ranks for the ties that resampling creates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from kdbench.errors import KdbenchError
from kdbench.metrics import loyalty
from kdbench.metrics.spec import Kind, Table, metric, register_kind, statistic
from kdbench.metrics.stats import ColumnContext, Resampled


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis: Σ(x−x̄)(y−ȳ) / √(Σ(x−x̄)² Σ(y−ȳ)²); 0 for a constant input."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc * yc).sum(axis=-1) / np.where(denom > 0, denom, 1), 0.0)


class RegressionContext(Resampled):
    """Efron draws of single examples (rank statistics need the resampled examples themselves)."""

    def __init__(self, pred, gold, *, n_samples, seed, draws=None):
        self.pred, self.gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
        super().__init__(len(self.pred), n_samples=n_samples, seed=seed, draws=draws, exact=True)

    def resampled(self) -> tuple[np.ndarray, np.ndarray]:
        idx = self.index
        return self.pred[idx], self.gold[idx]


def _floats(rows, column: str, where: str) -> np.ndarray:
    values = np.asarray(rows[column].astype(float), dtype=np.float64)
    if not np.isfinite(values).all():
        raise KdbenchError(f"{where}: NaN or missing {column!r} in the samples")
    return values


@dataclass
class RegressionTable(Table):
    kind = "regression"
    pred: np.ndarray
    gold: np.ndarray

    @property
    def n(self) -> int:
        return len(self.pred)

    @classmethod
    def of(cls, preds, task_spec: dict) -> RegressionTable:
        if preds.labels is None:
            raise KdbenchError(f"task {preds.task}: {preds.role} predictions have no gold scores")
        return cls(preds.scores, preds.labels)

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> RegressionTable:
        return cls(_floats(rows, "pred", where), _floats(rows, "label", where))

    def context(self, *, n_samples, seed, options, draws=None) -> RegressionContext:
        return RegressionContext(self.pred, self.gold, n_samples=n_samples, seed=seed, draws=draws)

    def trivial(self) -> RegressionTable:
        """The mean gold score, always."""
        return RegressionTable(np.full(self.n, self.gold.mean()), self.gold)


@dataclass
class RegressionPairTable(Table):
    kind = "regression_pair"
    teacher: np.ndarray
    student: np.ndarray
    label_range: float

    @property
    def n(self) -> int:
        return len(self.teacher)

    @classmethod
    def of(cls, student, teacher, task_spec: dict) -> RegressionPairTable:
        return cls(teacher.scores, student.scores, _label_range(task_spec))

    @classmethod
    def from_samples(cls, student_rows, teacher_rows, pair_rows, task_spec: dict, where: str) -> RegressionPairTable:
        return cls(_floats(teacher_rows, "pred", where), _floats(student_rows, "pred", where), _label_range(task_spec))

    def context(self, *, n_samples, seed, options, draws=None) -> ColumnContext:
        return ColumnContext({"teacher": self.teacher, "student": self.student}, self.n, n_samples=n_samples, seed=seed,
                             draws=draws, params={"label_range": self.label_range})


register_kind(Kind("regression", "example", "predicted and gold scores", table=RegressionTable, pair="regression_pair",
                   compare="pearson", columns=("spearman", "mse")))
register_kind(Kind("regression_pair", "example", "teacher and student scores, the task's label range",
                   table=RegressionPairTable, columns=("regression_loyalty",)))


def _label_range(task_spec: dict) -> float:
    low, high = task_spec["label_range"]
    return float(high) - float(low)


def _resampled(stat):
    return lambda ctx: stat(*ctx.resampled())


def _spearman(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    return pearson_rows(rankdata(pred, axis=-1), rankdata(gold, axis=-1))


def _mse(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    return ((pred - gold) ** 2).mean(axis=-1)


@statistic("pearson", "regression", higher_is_better=True, per_unit="(ŷ_i, y_i)", reference="Pearson 1896; GLUE STS-B",
           replicates=_resampled(pearson_rows))
def pearson(ctx):
    """Pearson r = Σ(ŷ−ŷ̄)(y−ȳ) / √(Σ(ŷ−ŷ̄)² Σ(y−ȳ)²) of predicted and gold scores; 0 for a constant input."""
    return pearson_rows(ctx.pred, ctx.gold)


@statistic("spearman", "regression", higher_is_better=True, per_unit="(ŷ_i, y_i)",
           reference="Spearman 1904; GLUE STS-B", replicates=_resampled(_spearman))
def spearman(ctx):
    """Spearman ρ: Pearson r of the average ranks of predicted and gold scores (resamples re-ranked, ties averaged)."""
    return _spearman(ctx.pred, ctx.gold)


@statistic("mse", "regression", higher_is_better=False, per_unit="(ŷ_i − y_i)² with the resample's other examples",
           replicates=_resampled(_mse))
def mse(ctx):
    """Mean squared error (1/N) Σ_i (ŷ_i − y_i)²."""
    return _mse(ctx.pred, ctx.gold)


@metric("regression_loyalty", "regression_pair", higher_is_better=True, per_unit="1 − √(min(|y_t,i − y_s,i| / R, 1))",
        reference="kdbench's definition, after Xu et al. 2021")
def regression_loyalty(ctx):
    """(1/N) Σ_i (1 − √(min(|y_t,i − y_s,i| / R, 1))), R the task's label range (5 for STS-B): 1 for identical
    predictions, 0 at a full-range disagreement. Xu et al. 2021 define loyalty for regression from a normalised
    teacher–student distance whose normalisation is not published in a form we could verify; we normalise by the
    label range and take the square root to mirror probability loyalty."""
    return loyalty.regression_loyalty_per_example(ctx.columns["teacher"], ctx.columns["student"],
                                                  ctx.params["label_range"])
