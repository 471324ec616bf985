"""The task registry: built-ins, external folders that add or override tasks, one-line errors."""
from __future__ import annotations

from kdbench.tasks import list_tasks


def test_builtins_cover_every_family_and_at_least_15_tasks():
    specs = list_tasks()
    assert len(specs) >= 15, [s.name for s in specs]
    families = {s.family for s in specs}
    assert {"glue", "glue_regression", "ner", "retrieval", "reasoning", "language_modeling", "lm_eval"} <= families
