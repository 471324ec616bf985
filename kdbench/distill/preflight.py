"""Pre-flight of ``train-and-eval``: each task's resolved suite against its models' configs and its
data, before any work (the evaluation side's checks, token limits and data: :mod:`kdbench.preflight`).

Without it, ``teacher.layers=50`` on a 6-layer teacher adds 44 random layers, an effective batch
of 32,000,000 is recorded for one step over 8,000 rows, and an error found only after the
teacher's fine-tune leaves a staging folder that ``--resume`` can never finish. Each recipe says
what it needs (:meth:`~kdbench.distill.recipes.base.Recipe.check`, ``check_models``, ``check_data``).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

from kdbench.config import StudentConfig, SuiteConfig, TeacherConfig
from kdbench.errors import KdbenchError
from kdbench.preflight import check_token_limits, model_config
from kdbench.tasks.base import Task


def _depth(config) -> int:
    return int(config.num_hidden_layers)


def _teacher_depth(task: Task, suite: SuiteConfig, spec: TeacherConfig, where: str) -> int:
    """The teacher's depth as it will be trained and distilled from: ``teacher.layers`` if set,
    which must not exceed the model's own (a deeper ``num_hidden_layers`` adds random layers)."""
    depth = _depth(model_config(spec.model, spec.revision))
    if spec.layers and spec.layers > depth:
        raise KdbenchError(f"{where}: teacher.layers {spec.layers}: model '{spec.model}' has {depth} layers")
    return spec.layers or depth


def _student_config(task: Task, suite: SuiteConfig, teacher_config, where: str):
    """The student's config as its builder will make it, every index and override checked, and a
    function giving the teacher layer matched to each student layer (the default pairs of feature
    terms, as :func:`kdbench.models.students.default_layer_map` finds them on the models)."""
    from kdbench.models.students import uniform_map
    from kdbench.registry import BUILDERS

    spec: StudentConfig = suite.student
    if spec.model:  # its own model (derived from it, or builder pretrained): its own tokenizer too
        check_token_limits(task, suite, spec.model, spec.revision, where)
        base, source = model_config(spec.model, spec.revision), f"student.model '{spec.model}'"
    else:
        base, source = teacher_config, "the teacher"
    try:
        config = BUILDERS.get(spec.builder).config(base, spec, source)
    except KdbenchError as e:
        raise KdbenchError(f"{where}: {e}") from None
    saved = getattr(config, "kdbench_layer_map", None)  # a student kdbench saved keeps its layer selection
    return config, lambda: list(saved) if saved else uniform_map(_depth(teacher_config), _depth(config), "tinybert")


def _truncated(config, layers: int | None):
    if not layers:
        return config
    config = copy.deepcopy(config)
    config.num_hidden_layers = layers
    return config


def resolved_teacher(suite: SuiteConfig):
    """The (first) teacher's config as it is distilled from: truncated to ``teacher.layers``."""
    first = (suite.teachers or [suite.teacher])[0]
    return _truncated(model_config(first.model, first.revision), first.layers)


def resolved_student(task: Task, suite: SuiteConfig, teacher_config):
    """The student's config as its builder makes it from ``teacher_config`` (or its own model)."""
    return _student_config(task, suite, teacher_config, f"suite {suite.name}, task {task.name}")[0]


def check_training(suite: SuiteConfig, tasks: Sequence[Task]) -> None:
    """train-and-eval: for every task, the recipe's own checks, the teacher(s) and student against
    their configs, the token limits against their tokenizers, the training batches against the
    training data, and the evaluation data. Raises :class:`KdbenchError` (one line) on the first problem."""
    from kdbench.distill.recipes import recipe
    from kdbench.distill.recipes.features import check_feature_term

    for task in tasks:
        ts = suite.for_task(task.name)
        where = f"suite {ts.name}, task {task.name}"
        module = recipe(task)
        module.check(task, ts)
        teachers = ts.teachers or [ts.teacher]
        for spec in teachers:
            _teacher_depth(task, ts, spec, where)
            check_token_limits(task, ts, spec.model, spec.revision, where)
        teacher_config = resolved_teacher(ts)
        student_config, student_map = _student_config(task, ts, teacher_config, where)
        for feature in ts.distill.features:
            check_feature_term(feature, student_config, teacher_config, student_map, where)
        module.check_models(task, ts, teacher_config, student_config)
        module.check_data(task, ts)
        task.eval_data(ts.data.eval_rows)


