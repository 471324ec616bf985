"""Sequence classification (GLUE-style single sentences and sentence pairs) and sequence regression
(STS-B) tasks."""
from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.special import softmax

from kdbench.backends.hf import HFClassifier
from kdbench.data import LoadedSplit
from kdbench.errors import KdbenchError, ModelHeadError
from kdbench.models.loading import load_for_head, load_tokenizer
from kdbench.predictions import ClassifierPredictions, RegressionPredictions
from kdbench.registry import FAMILIES
from kdbench.tasks.base import LoadedModel, RunSettings, Task, TaskSpecBase, unknown_metric
from kdbench.yamlio import StrictModel


class Columns(StrictModel):
    text: str
    text_pair: str | None = None
    label: str = "label"
    id: str | None = Field(None, description="stable example id column; row number when absent")


class GlueScore(StrictModel):
    """How the task enters the GLUE average: the mean of ``metrics``; tasks sharing a ``group``
    (MNLI matched and mismatched) count as one task, as in Wang et al. 2019."""

    metrics: list[str] = Field(..., min_length=1)
    group: str | None = None


class SequenceTaskSpec(TaskSpecBase):
    columns: Columns
    glue_score: GlueScore | None = None


class ClassificationSpec(SequenceTaskSpec):
    label_names: list[str] = Field(..., min_length=2)


class RegressionSpec(SequenceTaskSpec):
    label_range: tuple[float, float] = Field(..., description="[low, high] of gold scores; regression loyalty divides by high − low")


class _SequenceTask(Task):
    """What classification and regression share: columns, pairs, ids, the fine-tuned-model loading."""

    spec: SequenceTaskSpec

    @property
    def pairs(self) -> bool:
        return self.spec.columns.text_pair is not None

    def _columns(self) -> list[str]:
        c = self.spec.columns
        return [c.text, c.text_pair, c.label, c.id]

    def train_data(self, rows: int | None, seed: int) -> LoadedSplit:
        return self.train_split(rows, seed, self._columns())

    def train_record(self, split: LoadedSplit) -> dict:
        return {"split": split.spec.split, "rows": len(split.rows), "sha256": split.sha256()}

    def head_config(self) -> dict:
        """A fresh head of this task's outputs, named (its id2label is what an exported model shows)."""
        names = self.output_names()
        return {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

    def eval_data(self, rows: int | None) -> LoadedSplit:
        return self.load(self.spec.dataset.eval_split, rows, columns=self._columns())

    def dataset_record(self, data: LoadedSplit) -> dict:
        return {**data.reference(), "rows": len(data.rows)}

    def inputs(self, split: LoadedSplit) -> tuple[list[str], list[str] | None]:
        cols = self.spec.columns
        pairs = split.rows[cols.text_pair] if cols.text_pair else None
        return split.rows[cols.text], pairs

    efficiency_inputs = inputs

    def example_ids(self, split: LoadedSplit) -> list[str]:
        col = self.spec.columns.id
        return [str(x) for x in (split.rows[col] if col else range(len(split.rows)))]

    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        """A model fine-tuned for this task, head included (an evaluation never adds a fresh head)."""
        model = load_for_head(model_id, self.head, revision, device)
        if model.config.num_labels != self.num_labels:
            raise ModelHeadError(f"model '{model_id}' has {model.config.num_labels} outputs; task {self.name} needs "
                               f"{self.num_labels} (is it fine-tuned for {self.name}?)")
        return LoadedModel(model.eval(), load_tokenizer(model_id, revision), model_id)

    def _outputs(self, model: LoadedModel, split: LoadedSplit, role: str, settings: RunSettings) -> np.ndarray:
        backend = HFClassifier(model.model, model.tokenizer, settings.dtype, self.max_length(settings),
                               settings.eval.batch_size)
        texts, pairs = self.inputs(split)
        return backend.logits(texts, pairs, desc=f"eval {self.name} [{role}]")


@FAMILIES.register("glue", head="classification", kind="classifier")
@FAMILIES.register("classification", head="classification", kind="classifier")
class ClassificationTask(_SequenceTask):
    Spec = ClassificationSpec
    spec: ClassificationSpec

    def __init__(self, spec: ClassificationSpec):
        super().__init__(spec)
        self.num_labels = len(spec.label_names)

    @classmethod
    def check_spec(cls, spec: ClassificationSpec):
        return unknown_metric(spec) or _glue_score(spec)

    def output_names(self) -> list[str]:
        return list(self.spec.label_names)

    def labels(self, split: LoadedSplit) -> np.ndarray:
        labels = np.asarray(split.rows[self.spec.columns.label], dtype=np.int64)
        bad = labels[(labels < 0) | (labels >= self.num_labels)]
        if len(bad):
            raise KdbenchError(
                f"task {self.name}: label {bad[0]} outside 0..{self.num_labels - 1} in {split.spec.split} "
                "(unlabelled test split?)"
            )
        return labels

    def predict(self, model: LoadedModel, split: LoadedSplit, role: str, settings: RunSettings) -> ClassifierPredictions:
        probs = softmax(self._outputs(model, split, role, settings), axis=1).astype(np.float64)
        return ClassifierPredictions(self.name, role, self.example_ids(split), probs, self.labels(split))


@FAMILIES.register("glue_regression", head="regression", kind="regression")
@FAMILIES.register("regression", head="regression", kind="regression")
class RegressionTask(_SequenceTask):
    Spec = RegressionSpec
    spec: RegressionSpec
    num_labels = 1

    @classmethod
    def check_spec(cls, spec: RegressionSpec):
        low, high = spec.label_range
        if not high > low:
            return ("label_range",), f"needs low < high, got {list(spec.label_range)}"
        return unknown_metric(spec) or _glue_score(spec)

    def output_names(self) -> list[str]:
        return ["score"]

    def labels(self, split: LoadedSplit) -> np.ndarray:
        return np.asarray(split.rows[self.spec.columns.label], dtype=np.float32)

    def predict(self, model: LoadedModel, split: LoadedSplit, role: str, settings: RunSettings) -> RegressionPredictions:
        scores = self._outputs(model, split, role, settings)[:, 0].astype(np.float64)
        return RegressionPredictions(self.name, role, self.example_ids(split), scores,
                                     self.labels(split).astype(np.float64))


def _glue_score(spec: SequenceTaskSpec):
    if spec.glue_score is not None:
        for name in spec.glue_score.metrics:
            if name not in spec.metrics:
                return ("glue_score", "metrics"), f"'{name}' is not one of the task's metrics"
    return None
