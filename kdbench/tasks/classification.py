"""Sequence classification tasks (GLUE-style single sentences and sentence pairs)."""
from __future__ import annotations

import numpy as np

from kdbench.backends.hf import HFClassifier
from kdbench.config import EvalConfig
from kdbench.data import DatasetSpec, LoadedSplit, load_split
from kdbench.errors import KdbenchError
from kdbench.metrics import registry
from kdbench.predictions import ClassifierPredictions
from kdbench.tasks.spec import TaskSpec


class ClassificationTask:
    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.name = spec.name
        self.num_labels = len(spec.label_names)

    # data ---------------------------------------------------------------------------------------
    def train_data(self, rows: int | None, seed: int) -> LoadedSplit:
        if self.spec.dataset.train_split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined")
        return self._load(self.spec.dataset.train_split, rows, shuffle_seed=seed)

    def eval_data(self, rows: int | None) -> LoadedSplit:
        return self._load(self.spec.dataset.eval_split, rows, shuffle_seed=None)

    def _load(self, split: str, rows: int | None, shuffle_seed: int | None) -> LoadedSplit:
        d = self.spec.dataset
        loaded = load_split(DatasetSpec(d.id, d.config, split), rows=rows, shuffle_seed=shuffle_seed)
        cols = self.spec.columns
        wanted = [c for c in (cols.text, cols.text_pair, cols.label, cols.id) if c]
        missing = [c for c in wanted if c not in loaded.rows.column_names]
        if missing:
            raise KdbenchError(
                f"task {self.name}: dataset {d.id}/{d.config}/{split} has no column {missing[0]!r} "
                f"(columns: {', '.join(loaded.rows.column_names)})"
            )
        return loaded

    def inputs(self, split: LoadedSplit) -> tuple[list[str], list[str] | None]:
        cols = self.spec.columns
        pairs = split.rows[cols.text_pair] if cols.text_pair else None
        return split.rows[cols.text], pairs

    def labels(self, split: LoadedSplit) -> np.ndarray:
        labels = np.asarray(split.rows[self.spec.columns.label], dtype=np.int64)
        bad = labels[(labels < 0) | (labels >= self.num_labels)]
        if len(bad):
            raise KdbenchError(
                f"task {self.name}: label {bad[0]} outside 0..{self.num_labels - 1} in {split.spec.split} "
                "(unlabelled test split?)"
            )
        return labels

    def example_ids(self, split: LoadedSplit) -> list[str]:
        col = self.spec.columns.id
        return [str(x) for x in (split.rows[col] if col else range(len(split.rows)))]

    # predictions and scores ----------------------------------------------------------------------
    def predict(self, backend: HFClassifier, split: LoadedSplit, role: str) -> ClassifierPredictions:
        texts, pairs = self.inputs(split)
        probs = backend.predict_proba(texts, pairs, desc=f"eval {self.name} [{role}]")
        return ClassifierPredictions(self.name, role, self.example_ids(split), probs, self.labels(split))

    def score(self, preds: ClassifierPredictions, cfg: EvalConfig, seed: int) -> dict[str, dict]:
        return registry.compute(
            registry.classifier_metrics(cfg.ece_bins), self.spec.metrics, preds.probs, preds.labels,
            n_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=seed,
        )

    def score_pair(
        self, student: ClassifierPredictions, teacher: ClassifierPredictions, cfg: EvalConfig, seed: int
    ) -> dict[str, dict]:
        student.aligned_with(teacher)
        return registry.compute(
            registry.PAIR_METRICS, self.spec.pair_metrics, teacher.probs, student.probs,
            n_samples=cfg.bootstrap_samples, confidence=cfg.confidence, seed=seed,
        )

    def compare(
        self, a: ClassifierPredictions, b: ClassifierPredictions, cfg: EvalConfig, seed: int
    ) -> dict[str, dict]:
        """System ``a`` against ``b`` on the same items: accuracy difference with a paired-bootstrap
        CI and the exact McNemar test (what KD bought over the baseline, and whether it is real)."""
        a.aligned_with(b)
        return registry.paired_comparison(a.labels, a.probs, b.probs, n_samples=cfg.bootstrap_samples,
                                          confidence=cfg.confidence, seed=seed)
