"""The YAML description of a task, loaded into a validated, typed object."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kdbench.yamlio import StrictModel, read_yaml, validate


class DatasetRef(StrictModel):
    id: str
    config: str | None = None
    train_split: str | None = "train"
    eval_split: str = "validation"


class Columns(StrictModel):
    text: str
    text_pair: str | None = None
    label: str = "label"
    id: str | None = Field(None, description="stable example id column; row number when absent")


class TaskSpec(StrictModel):
    name: str
    family: str
    description: str = ""
    dataset: DatasetRef
    columns: Columns
    label_names: list[str] = Field(..., min_length=2)
    metrics: list[str]
    pair_metrics: list[str] = Field(default_factory=list)


def load_task_spec(path: Path) -> TaskSpec:
    return validate(TaskSpec, read_yaml(path), path)
