"""WNUT-17 for the NER tests: the task, a real slice, an untrained tagger's predictions and its settings."""
from __future__ import annotations

import pytest

from kdbench.config import EvalConfig
from kdbench.tasks import get_task
from kdbench.tasks.base import LoadedModel, RunSettings

TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = 120


@pytest.fixture(scope="module")
def task(data_dir):
    return get_task("wnut_17")


@pytest.fixture(scope="module")
def data(task):
    return task.eval_data(ROWS)


@pytest.fixture(scope="module")
def run_settings():
    return RunSettings(dtype="bf16", max_length=128, seed=0, eval=EvalConfig(bootstrap_samples=400, batch_size=32))


@pytest.fixture(scope="module")
def untrained(task):
    """The real MiniLM-L6 encoder with a seeded, untrained 13-tag head: its predictions are full of
    illegal IOB2 sequences (I- after O, type changes), the cases conlleval semantics decide."""
    import torch

    from kdbench.models.loading import load_for_head, load_tokenizer

    torch.manual_seed(0)
    model = load_for_head(TEACHER_ID, "token_classification", fresh_head=True, **task.head_config())
    return LoadedModel(model.eval(), load_tokenizer(TEACHER_ID), TEACHER_ID)


@pytest.fixture(scope="module")
def preds(task, data, untrained, run_settings):
    return task.predict(untrained, data, "teacher", run_settings)
