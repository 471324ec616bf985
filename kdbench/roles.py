"""The run record's roles, shared by training, evaluation and the reports (DESIGN.md: ROLE is
``teacher``, ``student``, ``baseline``, or a name the suite gives)."""
from __future__ import annotations

TEACHER, STUDENT, BASELINE = "teacher", "student", "baseline"
ENSEMBLE = "ensemble"  # a multi-teacher run's pseudo-model: the weighted mixture of its teachers


def teacher_roles(n: int) -> list[str]:
    """Run-record roles of the n teachers of an ensemble, in config order."""
    return [f"teacher_{i}" for i in range(1, n + 1)]
