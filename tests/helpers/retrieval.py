"""DBpedia-Entity for the retrieval tests: the task, a small slice of it and the embedding models."""
from __future__ import annotations

import pytest

from kdbench.tasks.registry import get_task

DATASET = "BeIR/dbpedia-entity-5k"
TEACHER_ID = "sentence-transformers/all-MiniLM-L6-v2"
STUDENT_ID = "sentence-transformers/paraphrase-MiniLM-L3-v2"
CORPUS_ROWS = 300  # 23 evaluated queries keep a relevant document in the first 300


def small_task(corpus_rows: int = CORPUS_ROWS):
    task = get_task("dbpedia_entity_5k")
    task.spec = task.spec.model_copy(update={"corpus_rows": corpus_rows})
    return task


@pytest.fixture(scope="module")
def task(data_dir):
    return small_task()


@pytest.fixture(scope="module")
def models(task):
    return {role: task.load_model(mid) for role, mid in (("teacher", TEACHER_ID), ("student", STUDENT_ID))}
