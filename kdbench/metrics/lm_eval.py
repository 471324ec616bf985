"""lm-evaluation-harness's own metrics of the tasks the bridge runs (``acc``, ``acc_norm``,
``exact_match``...), as reported by lm-eval for the chosen filter, beside kdbench's.

Kinds: ``lm_eval_choice`` (multiple choice: the softmax over the choices' log-likelihoods is a
class distribution, so every classifier metric applies too) and ``lm_eval_generation`` (generate
until). A name that is not a kdbench metric of the kind is one of lm-eval's: its value is what
lm-eval reported; its CI, when that value is the mean of lm-eval's per-document values (every
``mean``-aggregated metric), kdbench's percentile bootstrap of the mean (same resamples,
confidence and seed as every kdbench CI), else lm-eval's stderr as a normal interval value ± z·stderr,
else null. Its direction is lm-eval's (``lm_eval.api.registry.is_higher_better``); samples.parquet
keeps the per-document values of mean-aggregated metrics (columns ``lm_eval:<name>``), which is what
the gate resamples.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from kdbench.errors import KdbenchError
from kdbench.metrics.classification import ClassifierContext, ClassifierTable
from kdbench.metrics.spec import EITHER, Kind, Table, kind, metric, register_kind
from kdbench.metrics.stats import ColumnContext, bootstrap_mean_ci

PREFIX = "lm_eval:"
LM_EVAL_METRIC = "{metric}"  # the template that stands for any of lm-eval's metric names


def mean_aggregated(sample_metrics: dict[str, list], reported: dict) -> dict[str, np.ndarray]:
    """lm-eval's per-document values of each metric whose reported value is their mean."""
    out = {}
    for name, per_doc in sample_metrics.items():
        if name in reported and all(isinstance(v, (bool, int, float, np.number)) for v in per_doc):
            values = np.asarray(per_doc, dtype=np.float64)
            if np.isclose(values.mean(), float(reported[name]), rtol=0, atol=1e-9):
                out[name] = values
    return out


def _from_samples(rows) -> dict[str, np.ndarray]:
    return {c.removeprefix(PREFIX): np.asarray(rows[c], dtype=np.float64)
            for c in rows.columns if c.startswith(PREFIX) and rows[c].notna().all()}


class _LmEvalValues:
    """What both lm-eval tables hold: per-document values and lm-eval's reported aggregates."""

    lm_eval: dict[str, np.ndarray]
    reported: dict

    def has(self, metric: str) -> bool:
        spec = kind(self.kind).find(metric)
        return spec is not None and (spec.template != LM_EVAL_METRIC or metric in self.lm_eval)

    def columns(self) -> dict[str, np.ndarray]:
        return {PREFIX + name: v for name, v in self.lm_eval.items()}


@dataclass
class LmEvalChoiceTable(_LmEvalValues, ClassifierTable):
    kind = "lm_eval_choice"
    lm_eval: dict[str, np.ndarray] = field(default_factory=dict)
    reported: dict = field(default_factory=dict)

    @classmethod
    def of(cls, preds, task_spec: dict) -> LmEvalChoiceTable:
        base = ClassifierTable.of(preds, task_spec)
        return cls(base.probs, base.labels, mean_aggregated(preds.sample_metrics, preds.reported), dict(preds.reported))

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> LmEvalChoiceTable:
        base = ClassifierTable.from_samples(rows, task_spec, where)
        return cls(base.probs, base.labels, _from_samples(rows))

    def context(self, *, n_samples, seed, options, draws=None) -> ClassifierContext:
        ctx = ClassifierTable.context(self, n_samples=n_samples, seed=seed, options=options, draws=draws)
        ctx.lm_eval, ctx.reported = self.lm_eval, self.reported
        return ctx


@dataclass
class LmEvalGenerationTable(_LmEvalValues, Table):
    kind = "lm_eval_generation"
    lm_eval: dict[str, np.ndarray]
    n_docs: int
    reported: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.n_docs

    @classmethod
    def of(cls, preds, task_spec: dict) -> LmEvalGenerationTable:
        return cls(mean_aggregated(preds.sample_metrics, preds.reported), len(preds.example_ids), dict(preds.reported))

    @classmethod
    def from_samples(cls, rows, task_spec: dict, where: str) -> LmEvalGenerationTable:
        return cls(_from_samples(rows), len(rows))

    def context(self, *, n_samples, seed, options, draws=None) -> ColumnContext:
        ctx = ColumnContext(self.lm_eval, self.n, n_samples=n_samples, seed=seed, draws=draws)
        ctx.lm_eval, ctx.reported = self.lm_eval, self.reported
        return ctx


register_kind(Kind("lm_eval_choice", "document", "lm-eval multiple choice: log-likelihood of every choice, the gold one",
                   table=LmEvalChoiceTable, pair="classifier_pair", compare="accuracy", parents=("classifier",),
                   columns=("ece", "brier", "nll")))
register_kind(Kind("lm_eval_generation", "document", "lm-eval generations, the answers its filter extracted, "
                   "its per-document metrics", table=LmEvalGenerationTable, pair="generation_pair",
                   compare="exact_match", compare_label="accuracy", compare_odds_ratio=False))


def _direction(fields: dict) -> dict:
    from lm_eval.api.registry import is_higher_better

    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)  # lm-eval warns about metrics it does not know; unknown means "not gated"
    try:
        return {"higher_is_better": is_higher_better(fields["metric"])}
    finally:
        logger.setLevel(level)


def _value(ctx, metric: str) -> float:
    if metric in ctx.reported:
        return float(ctx.reported[metric])
    if metric in ctx.lm_eval:
        return float(np.mean(ctx.lm_eval[metric]))
    known = ", ".join(k for k in ctx.reported if not k.endswith("_stderr")) or "none"
    raise KdbenchError(f"lm-eval reported no metric {metric!r} (reported: {known})")


def _interval(ctx, confidence: float, metric: str) -> list[float] | None:
    if metric in ctx.lm_eval:
        return list(bootstrap_mean_ci(ctx.lm_eval[metric], ctx.n_samples, confidence, ctx.seed))
    stderr = ctx.reported.get(f"{metric}_stderr")
    if isinstance(stderr, (int, float)) and np.isfinite(stderr):
        value, z = _value(ctx, metric), float(norm.ppf(0.5 + confidence / 2))
        return [value - z * stderr, value + z * stderr]
    return None


for _kind in ("lm_eval_choice", "lm_eval_generation"):
    def _values(ctx, metric):
        """lm-eval's reported value of the metric for the task's filter (lm-eval's definition); gated through the
        mean of its per-document values."""
        return ctx.lm_eval[metric]

    metric(LM_EVAL_METRIC, _kind, higher_is_better=None, per_unit="lm-eval's per-document value of the metric",
           reference="lm-evaluation-harness (Gao et al. 2021; Biderman et al. 2024)", test=EITHER, resolve=_direction,
           interval=_interval, point=_value)(_values)
