"""The one Task interface every family implements (DESIGN.md, "Core objects").

A task is data first (its YAML spec) and code only where data cannot say it. The pipeline asks a
task for its evaluation data, a model loaded with the right head, predictions from that model and
metrics from predictions; it never knows which family it is talking to.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field, ValidationInfo, field_validator, model_validator

from kdbench.config import EvalConfig, TaskName
from kdbench.data import DatasetSpec, LoadedSplit, load_split
from kdbench.errors import KdbenchError
from kdbench.metrics import spec as metric_spec
from kdbench.predictions import Predictions
from kdbench.registry import FAMILIES, unknown_name
from kdbench.yamlio import StrictModel, beside_file


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
    def _one_source(self) -> DatasetRef:
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
    """Keys every task YAML has; a family's spec adds its own (columns, prompt, label names...).
    ``metrics`` and ``pair_metrics`` name registered metrics (``kdbench metrics``); ``main_score``,
    one of ``metrics``, is the task's headline: what leaderboards rank by."""

    name: TaskName
    family: str
    description: str = ""
    dataset: DatasetRef
    metrics: list[str] = Field(..., min_length=1)
    main_score: str = Field(..., description="the headline metric, one of metrics (what the leaderboard ranks by)")
    pair_metrics: list[str] = Field(default_factory=list)
    max_length: int | None = Field(None, gt=0, description="token limit for this task; the suite's when null")

    def data_label(self) -> str:
        """Where the evaluation data comes from, for listings (``kdbench tasks``)."""
        d = self.dataset
        return f"{d.path or d.id + '/' + (d.config or 'default')}:{d.eval_split}"


def unknown_metric(spec: TaskSpecBase) -> tuple[tuple, str] | None:
    """The first name in ``spec.metrics`` / ``spec.pair_metrics`` that the registry does not know for
    the family's predictions kind (its registered ``kind``) or that the task cannot ask for, and a
    ``main_score`` that is not one of ``metrics``: ``(key path, message)`` for ``check_spec``, or None."""
    kind_name = FAMILIES.meta(spec.family)["kind"]
    k = metric_spec.kind(kind_name)
    task_spec = spec.model_dump(mode="json")
    for key, names, kind_of in (("metrics", spec.metrics, k), ("pair_metrics", spec.pair_metrics,
                                                               metric_spec.kind(k.pair) if k.pair else None)):
        for i, name in enumerate(names):
            found = kind_of.find(name) if kind_of is not None else None
            if found is None:
                known = kind_of.names() if kind_of is not None else []
                return (key, i), unknown_name(kind_of.metrics.what if kind_of else f"{kind_name} pair metric", name, known)
            problem = found.check(found.fields, task_spec) if found.check else None
            if problem:
                return (key, i), f"{name}: {problem}"
    if spec.main_score not in spec.metrics:
        return ("main_score",), f"{spec.main_score!r} is not one of the task's metrics ({', '.join(spec.metrics)})"
    return None


@dataclass
class RunSettings:
    """How models are run and scored: from the suite, or from `kdbench eval`'s options."""

    dtype: str = "bf16"
    max_length: int = 64
    seed: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def of(cls, suite) -> RunSettings:
        return cls(dtype=suite.dtype, max_length=suite.max_length, seed=suite.seed, eval=suite.eval)


@dataclass
class LoadedModel:
    """A model with its tokenizer, ready for inference; ``source`` is the id or folder it came from."""

    model: Any
    tokenizer: Any
    source: str


@runtime_checkable
class TrainableTask(Protocol):
    """What a training recipe reads of a task (``kdbench.distill.recipes``): recipes see tasks only
    through this, never as a concrete family. A family implements the parts its head's recipe reads;
    :class:`Task` answers the others with one line saying the family does not say it.

    * ``train_data(rows, seed)``: the shuffled training data (first ``rows``), ``train_record(data)``
      its run-record entry (split, rows, sha256: the teacher caches key on it);
    * ``inputs(data)``: what the models read (``(texts, pairs)`` of a sequence task, the word lists of
      NER sentences, ``(documents, queries)`` of a retrieval corpus); ``labels(data)`` the gold targets;
    * ``training_texts(data, tokenizer)``: causal LMs: the texts to train on, a ``str`` scored whole or
      a ``(prompt, completion)`` pair whose completion is scored, formatted as the task prompts;
    * ``stop_strings()``: where a generated answer ends (sequence-level KD cuts the teacher's there);
    * ``head_config()``: ``from_pretrained`` overrides giving a plain checkpoint this task's fresh head."""

    name: str
    head: str

    def max_length(self, settings: RunSettings) -> int: ...
    def train_data(self, rows: int | None, seed: int) -> Any: ...
    def train_record(self, data: Any) -> dict: ...
    def inputs(self, data: Any) -> Any: ...
    def labels(self, data: Any) -> Any: ...
    def training_texts(self, data: Any, tokenizer=None) -> list[str | tuple[str, str]]: ...
    def stop_strings(self) -> list[str]: ...
    def head_config(self) -> dict: ...


class Task(ABC):
    """A family's Task class is registered with ``@FAMILIES.register(family, head=..., kind=...)``:
    the head its models carry (``kdbench.models.heads``) and the predictions kind its metrics are of
    (``kdbench.metrics.spec``)."""

    Spec: ClassVar[type[TaskSpecBase]]

    def __init__(self, spec: TaskSpecBase):
        self.spec = spec
        self.name = spec.name

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def head(self) -> str:
        return FAMILIES.meta(self.spec.family)["head"]

    @classmethod
    def check_spec(cls, spec: TaskSpecBase) -> tuple[tuple, str] | None:
        """What the YAML schema cannot say (unknown metric names...): ``(key path, message)`` of the
        first problem, or None."""
        return None

    def max_length(self, settings: RunSettings) -> int:
        return self.spec.max_length or settings.max_length

    # whether an example is a pair of texts (both must fit in a token limit with their special tokens)
    pairs: bool = False

    def token_limits(self, settings: RunSettings) -> dict[str, int]:
        """Each token limit a model of this task reads texts with, by the setting that gives it
        (for the pre-flight: within what the model can read, and room for more than special tokens)."""
        return {"the task's max_length" if self.spec.max_length else "max_length": self.max_length(settings)}

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

    # training (TrainableTask): what a family does not say is one line naming it -------------------
    def _not_said(self, what: str):
        return KdbenchError(f"task {self.name}: the {self.family} family does not say its {what}, which the "
                            f"{self.head} recipe trains on")

    def train_split(self, rows: int | None, seed: int, columns: list[str] = ()) -> LoadedSplit:
        """The shuffled training split (``dataset.train_split``), first ``rows``."""
        split = self.spec.dataset.train_split if self.spec.dataset is not None else None
        if split is None:
            raise KdbenchError(f"task {self.name}: no training split is defined (dataset.train_split)")
        return self.load(split, rows, shuffle_seed=seed, columns=columns)

    def train_data(self, rows: int | None, seed: int) -> Any:
        raise self._not_said("training data")

    def train_record(self, data: Any) -> dict:
        """The run record's training data entry: split, rows, sha256 (of ``data.split``, a LoadedSplit)."""
        split = data.split
        return {"split": split.spec.split, "rows": len(split.rows), "sha256": split.sha256()}

    def inputs(self, data: Any) -> Any:
        raise self._not_said("model inputs")

    def labels(self, data: Any) -> Any:
        raise self._not_said("labels")

    def training_texts(self, data: Any, tokenizer=None) -> list[str | tuple[str, str]]:
        raise self._not_said("training texts")

    def stop_strings(self) -> list[str]:
        return []

    def head_config(self) -> dict:
        return {}

    def runs_code(self) -> str | None:
        """Where running this task would import Python from a task folder (``FILE:LINE (what)``), or
        None: task files are data, and code runs only when the user opts in (tasks.registry.get_task)."""
        return None

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

    # metrics: generic, from the registry (tasks name metrics; kdbench.metrics computes them) ---
    def _spec_dict(self) -> dict:
        return self.spec.model_dump(mode="json")

    def table(self, preds: Predictions) -> metric_spec.Table:
        """The per-unit table of one model's predictions (its predictions kind's)."""
        return metric_spec.kind(preds.kind).table.of(preds, self._spec_dict())

    def pair_table(self, student: Predictions, teacher: Predictions) -> metric_spec.Table:
        student.aligned_with(teacher)
        return metric_spec.kind(metric_spec.kind(student.kind).pair).table.of(student, teacher, self._spec_dict())

    def evaluate(self, preds: Predictions, settings: RunSettings) -> tuple[dict[str, dict], Any]:
        """One model's metrics ``{metric: {"value", "ci"}}`` and its ``samples.parquet`` rows."""
        table = self.table(preds)
        scores = metric_spec.score(table, self.spec.metrics, metric_spec.Resampling.of(settings.eval, settings.seed))
        frame = preds.to_frame()
        for column, values in table.columns().items():
            frame[column] = values
        return scores, frame

    def evaluate_pair(self, student: Predictions, teacher: Predictions, settings: RunSettings,
                      key: str | None = None) -> tuple[dict[str, dict], Any]:
        """Teacher–student metrics from two Predictions, and the pair's ``samples.parquet`` rows (role
        ``key``, the run record's pair key) when its table has per-unit columns the two models' own
        rows cannot give back (None otherwise)."""
        table = self.pair_table(student, teacher)
        scores = metric_spec.score(table, self.spec.pair_metrics,
                                   metric_spec.Resampling.of(settings.eval, settings.seed))
        if getattr(student, "generated", None) is not None and getattr(teacher, "generated", None) is not None:
            # eval.generated_text kept both models' generations; imported here because it runs a backend
            from kdbench.tasks import generated_text

            scores.update(generated_text.pair_metrics(student.generated, teacher.generated, settings))
        columns = {c: v for c, v in table.columns().items() if v is not None}
        if not columns:
            return scores, None
        pair = Predictions(self.name, key or f"{student.role}|{teacher.role}", student.example_ids)
        return scores, pair.frame(None, None, **columns)

    def score(self, preds: Predictions, settings: RunSettings) -> dict[str, dict]:
        """``{metric: {"value": float, "ci": [lo, hi] | None}}`` for one model."""
        return self.evaluate(preds, settings)[0]

    def score_pair(self, student: Predictions, teacher: Predictions, settings: RunSettings) -> dict[str, dict]:
        """Teacher–student metrics (loyalty, agreement) from two Predictions."""
        return self.evaluate_pair(student, teacher, settings)[0]

    def compare(self, a: Predictions, b: Predictions, settings: RunSettings) -> dict[str, dict]:
        """System ``a`` against ``b`` on the same items (what KD bought over the baseline), on the
        kind's comparison metric (:func:`kdbench.metrics.spec.compare`); empty where it has none."""
        a.aligned_with(b)
        return metric_spec.compare(self.table(a), self.table(b), metric_spec.Resampling.of(settings.eval, settings.seed))
