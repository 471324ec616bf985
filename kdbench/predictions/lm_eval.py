"""Predictions brought back from an lm-evaluation-harness run (the ``lm_eval`` task family).

Both kinds keep lm-eval's own per-document metric values (``sample_metrics``, e.g. ``acc``,
``acc_norm``, ``exact_match`` per document) and the aggregates lm-eval reported for the run
(``reported``: ``{metric: value, metric + "_stderr": stderr or "N/A"}`` of one filter), so lm-eval's
numbers stay in the record beside kdbench's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.special import softmax

from kdbench.predictions.classifier import ClassifierPredictions
from kdbench.predictions.generation import GenerationPredictions


@dataclass
class ChoicePredictions(ClassifierPredictions):
    """A multiple-choice task scored by log-likelihood: ``loglikelihoods[i, j]`` = Σ log p(choice j's
    tokens | prompt of document i), as lm-eval's ``loglikelihood`` returns it. ``probs`` is their
    softmax over the choices, p_ij = exp(ll_ij) / Σ_k exp(ll_ik): the model's distribution renormalised
    to the answer set. Its argmax is lm-eval's ``acc`` prediction, and it is the distribution the
    classifier metrics (ECE, Brier, NLL...) and teacher–student metrics (loyalty, KL, acceptance
    rate) use."""

    kind: ClassVar[str] = "lm_eval_choice"
    loglikelihoods: np.ndarray = field(default=None)  # (n, choices)
    sample_metrics: dict[str, list] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_loglikelihoods(cls, task: str, role: str, example_ids: list[str], loglikelihoods: np.ndarray,
                            labels: np.ndarray | None, sample_metrics: dict[str, list] | None = None,
                            reported: dict[str, Any] | None = None) -> ChoicePredictions:
        lls = np.asarray(loglikelihoods, dtype=np.float64)
        return cls(task, role, example_ids, softmax(lls, axis=1), labels, lls, sample_metrics or {}, reported or {})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loglikelihoods is None or self.loglikelihoods.shape != self.probs.shape:
            raise ValueError(f"{self.task}: log-likelihoods do not match probs {self.probs.shape}")


@dataclass
class LmEvalGenerationPredictions(GenerationPredictions):
    """A generation task run by lm-eval: the raw ``generations``, the ``answers`` lm-eval's filter
    extracted from them (None where the filter found none and gave its fallback), the gold targets
    as the task states them (``gold``), and lm-eval's own per-document metric values."""

    kind: ClassVar[str] = "lm_eval_generation"
    sample_metrics: dict[str, list] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray | None:
        """Per document: lm-eval's ``exact_match`` > 0, when the task has that metric."""
        values = self.sample_metrics.get("exact_match")
        return None if values is None else np.asarray(values, dtype=np.float64) > 0
