"""Training recipes, one readable file per model head (torchtune style): make or reuse the teacher,
build the student, distil it, train the no-KD baseline with the same budget, and hand the models
back for evaluation. ``train-and-eval`` picks the recipe by the task's head."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdbench.config import SuiteConfig
    from kdbench.tasks.base import LoadedModel, Task

TEACHER, STUDENT, BASELINE = "teacher", "student", "baseline"

# head -> the recipe's module: ``run(task, suite, run_dir) -> Trained``, and for the pre-flight
# ``check(task, suite)`` (what the suite alone must say; run calls it first) and
# ``check_data(task, suite)`` (the training batches fit in the training data)
RECIPES = {
    "classification": "kdbench.distill.recipes.classification",
    "regression": "kdbench.distill.recipes.classification",
    "token_classification": "kdbench.distill.recipes.token_classification",
    "embedding": "kdbench.distill.recipes.embedding",
    "causal_lm": "kdbench.distill.recipes.causal_lm",
}


@dataclass
class Trained:
    """What a recipe hands back: models by role (teacher, student, baseline), each role's run-record
    ``models`` entry (id, revision, params, + how it was made), each role's folder or hub id (the
    efficiency figures load it in a fresh process), the training data's record, timings, for a
    multi-teacher run the teachers' ensemble weights (the pipeline scores the ensemble from them), and
    each trained role's training curve (``kdbench.distill.curves``) where the pipeline asked for one."""

    models: dict[str, "LoadedModel"]
    info: dict[str, dict]
    dirs: dict[str, str]
    train_dataset: dict | None = None
    durations: dict[str, float] = field(default_factory=dict)
    ensemble: dict[str, float] = field(default_factory=dict)  # multi-teacher: teacher role -> normalised weight
    curves: dict[str, list[dict]] = field(default_factory=dict)  # eval.during_training: role -> points


def recipe(task: "Task"):
    """The recipe module of the task's head."""
    return importlib.import_module(RECIPES[task.head])


def run_recipe(task: "Task", suite: "SuiteConfig", run_dir: Path) -> Trained:
    return recipe(task).run(task, suite, run_dir)
