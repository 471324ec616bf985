"""The one Task interface every family implements (DESIGN.md, "Core objects").

A task is data first (its YAML spec) and code only where data cannot say it. The pipeline asks a
task for its evaluation data, a model loaded with the right head, predictions from that model and
metrics from predictions; it never knows which family it is talking to.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kdbench.config import EvalConfig
from kdbench.data import DatasetSpec, LoadedSplit, load_split
from kdbench.errors import KdbenchError
from kdbench.predictions import Predictions
from kdbench.yamlio import StrictModel, beside_file

# Which transformers head a task's models carry (models.loading.AUTO_CLASSES maps these).
HEADS = ("classification", "regression", "token_classification", "embedding", "causal_lm")


class DatasetRef(StrictModel):
    """Where a task's rows come from: a hub dataset (``id``, ``config``, a pinned ``revision``; the
    mirror serves it when it holds it) or your own files (``path``, always loaded locally)."""

    id: str | None = Field(None, description="hub dataset id")
    path: str | None = Field(None, description="your own data: a CSV / JSON Lines / Parquet file (its one split is "
                                               "'train') or a folder datasets.load_dataset understands; relative to "
                                               "the task file")
    data_files: dict[str, str | list[str]] | None = Field(
        None, description="path is a folder: split -> file name(s) or glob(s) in it (else datasets infers the splits "
                          "from the file names: train, validation, test)")
    config: str | None = None
    revision: str | None = Field(None, description="hub datasets: the commit, tag or branch to load (recorded; part of "
                                                   "comparability)")
    train_split: str | None = "train"
    eval_split: str = "validation"

    @field_validator("path")
    @classmethod
    def _relative_to_the_task_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path = beside_file(value, info.context)
        if not path.exists():
            raise ValueError(f"no such file or folder: {path}")
        return str(path)

    @model_validator(mode="after")
    def _one_source(self) -> "DatasetRef":
        if (self.id is None) == (self.path is None):
            raise ValueError("give dataset.id (a hub dataset) or dataset.path (your own file or folder)"
                             + (", not both" if self.id else ""))
        if self.path is not None and self.revision is not None:
            raise ValueError("dataset.revision pins a hub dataset; a local dataset.path has none")
        if self.data_files is not None and (self.path is None or not Path(self.path).is_dir()):
            raise ValueError("dataset.data_files names files in a folder: dataset.path must be a folder")
        return self

    def spec(self, split: str) -> DatasetSpec:
        return DatasetSpec(self.id, self.config, split, revision=self.revision, path=self.path,
                           data_files=self.data_files)


class TaskSpecBase(StrictModel):
    """Keys every task YAML has; a family's spec adds its own (columns, prompt, label names...)."""

    name: str
    family: str
    description: str = ""
    dataset: DatasetRef
    metrics: list[str] = Field(..., min_length=1)
    pair_metrics: list[str] = Field(default_factory=list)
    max_length: int | None = Field(None, gt=0, description="token limit for this task; the suite's when null")


def unknown_metric(spec: TaskSpecBase, family: str, metrics, pair_metrics) -> tuple[tuple, str] | None:
    """The first name in ``spec.metrics`` / ``spec.pair_metrics`` that the family does not know:
    ``(key path, message)`` for ``check_spec``, or None. The known names are listed in the given order."""
    for key, names, known, kind in (("metrics", spec.metrics, metrics, "metric"),
                                    ("pair_metrics", spec.pair_metrics, pair_metrics, "pair metric")):
        for i, m in enumerate(names):
            if m not in known:
                return (key, i), f"unknown {family} {kind} {m!r} (known: {', '.join(known)})"
    return None


@dataclass
class RunSettings:
    """How models are run and scored: from the suite, or from `kdbench eval`'s options."""

    dtype: str = "bf16"
    max_length: int = 64
    seed: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def of(cls, suite) -> "RunSettings":
        return cls(dtype=suite.dtype, max_length=suite.max_length, seed=suite.seed, eval=suite.eval)


@dataclass
class LoadedModel:
    """A model with its tokenizer, ready for inference; ``source`` is the id or folder it came from."""

    model: Any
    tokenizer: Any
    source: str


class Task(ABC):
    family: ClassVar[str]
    head: ClassVar[str]
    Spec: ClassVar[type[TaskSpecBase]]

    def __init__(self, spec: TaskSpecBase):
        self.spec = spec
        self.name = spec.name

    @classmethod
    def check_spec(cls, spec: TaskSpecBase) -> tuple[tuple, str] | None:
        """What the YAML schema cannot say (unknown metric names...): ``(key path, message)`` of the
        first problem, or None."""
        return None

    def max_length(self, settings: RunSettings) -> int:
        return self.spec.max_length or settings.max_length

    # data ---------------------------------------------------------------------------------------
    def load(self, split: str, rows: int | None = None, shuffle_seed: int | None = None,
             columns: list[str] = ()) -> LoadedSplit:
        """One split of the task's dataset, checked to have ``columns``."""
        loaded = load_split(self.spec.dataset.spec(split), rows=rows, shuffle_seed=shuffle_seed)
        missing = [c for c in columns if c and c not in loaded.rows.column_names]
        if missing:
            raise KdbenchError(
                f"task {self.name}: dataset {loaded.where}: no column {missing[0]!r} "
                f"(columns: {', '.join(loaded.rows.column_names)})"
            )
        return loaded

    @abstractmethod
    def eval_data(self, rows: int | None) -> Any:
        """The evaluation examples (first ``rows``, all when None)."""

    @abstractmethod
    def dataset_record(self, data: Any) -> dict:
        """The run record's ``datasets`` entry: id, config, split, rows, sha256 (+ source...)."""

    # models and predictions ----------------------------------------------------------------------
    @abstractmethod
    def load_model(self, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
        """A model with this task's head, as saved (no new head is initialised for evaluation), on
        ``device`` (a resolved torch device; None: the CPU)."""

    @abstractmethod
    def predict(self, model: LoadedModel, data: Any, role: str, settings: RunSettings) -> Predictions:
        ...

    @abstractmethod
    def efficiency_inputs(self, data: Any) -> tuple[list[str], list[str] | None]:
        """Texts (and second texts of pairs) whose forward pass the efficiency figures time."""

    # metrics ------------------------------------------------------------------------------------
    @abstractmethod
    def score(self, preds: Predictions, settings: RunSettings) -> dict[str, dict]:
        """``{metric: {"value": float, "ci": [lo, hi] | None}}`` for one model."""

    @abstractmethod
    def score_pair(self, student: Predictions, teacher: Predictions, settings: RunSettings) -> dict[str, dict]:
        """Teacher–student metrics (loyalty, agreement) from two Predictions."""

    def compare(self, a: Predictions, b: Predictions, settings: RunSettings) -> dict[str, dict]:
        """System ``a`` against ``b`` on the same items (what KD bought over the baseline); empty
        where a family has no paired test."""
        return {}
