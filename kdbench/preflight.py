"""Pre-flight: each task's resolved suite against its models' configs and its data, before any work.

What a suite can get wrong on its own is validated in :mod:`kdbench.config`. What needs a model's
config (its depth, width, vocabulary, token limit) or the data (how many training examples there
are) is checked here, once for every task before the first model is loaded, fine-tuned or scored
and before the run folder exists. Without it, ``teacher.layers=50`` on a 6-layer teacher adds 44
random layers, ``max_length=1`` truncates nothing (it is below the special tokens), an effective
batch of 32,000,000 is recorded for one step over 8,000 rows, and an error found only after the
teacher's fine-tune leaves a staging folder that ``--resume`` can never finish.

Reading a model's config and tokenizer takes milliseconds (no weights); the training data is
loaded once more (the ``datasets`` cache makes that cheap); the evaluation data is loaded as the
run will load it.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import lru_cache

from kdbench.config import StudentConfig, SuiteConfig, TeacherConfig
from kdbench.errors import KdbenchError
from kdbench.tasks.base import RunSettings, Task

_NO_LIMIT = 10**6  # transformers' model_max_length when a tokenizer does not know its model's limit (1e30)


@lru_cache(maxsize=64)
def _model_config(model_id: str, revision: str | None):
    from transformers import AutoConfig

    from kdbench.models.loading import _first_line, _offline_hint

    try:
        return AutoConfig.from_pretrained(model_id, revision=revision)
    except Exception as e:
        raise KdbenchError(f"model '{model_id}': cannot load its config{_offline_hint()}: {_first_line(e)}") from None


@lru_cache(maxsize=64)
def _tokenizer(model_id: str, revision: str | None):
    from kdbench.models.loading import load_tokenizer

    return load_tokenizer(model_id, revision)


def _depth(config) -> int:
    return int(config.num_hidden_layers)


def check_token_limits(task: Task, suite: SuiteConfig, model_id: str, revision: str | None, where: str) -> None:
    """Every token limit of the task leaves room for text after the model's special tokens, and is
    within what the model reads (its tokenizer's ``model_max_length``, else its position table)."""
    tokenizer = _tokenizer(model_id, revision)
    config = _model_config(model_id, revision)
    most = tokenizer.model_max_length
    if most is None or most >= _NO_LIMIT:
        most = getattr(config, "max_position_embeddings", None)
    least = tokenizer.num_special_tokens_to_add(pair=task.pairs) + (2 if task.pairs else 1)
    for setting, limit in task.token_limits(RunSettings.of(suite)).items():
        if limit < least:
            raise KdbenchError(f"{where}: {setting} {limit} leaves no room for text: model '{model_id}' adds "
                               f"{least - (2 if task.pairs else 1)} special tokens (use at least {least})")
        if most is not None and limit > most:
            raise KdbenchError(f"{where}: {setting} {limit}: model '{model_id}' reads at most {most} tokens")


def _teacher_depth(task: Task, suite: SuiteConfig, spec: TeacherConfig, where: str) -> int:
    """The teacher's depth as it will be trained and distilled from: ``teacher.layers`` if set,
    which must not exceed the model's own (a deeper ``num_hidden_layers`` adds random layers)."""
    depth = _depth(_model_config(spec.model, spec.revision))
    if spec.layers and spec.layers > depth:
        raise KdbenchError(f"{where}: teacher.layers {spec.layers}: model '{spec.model}' has {depth} layers")
    return spec.layers or depth


def _student_config(task: Task, suite: SuiteConfig, teacher_config, where: str):
    """The student's config as its builder will make it, every index and override checked, and a
    function giving the teacher layer matched to each student layer (the default pairs of feature
    terms, as :func:`kdbench.models.students.default_layer_map` finds them on the models)."""
    from kdbench.models.students import check_layer_map, student_config, student_layers, uniform_map

    spec: StudentConfig = suite.student
    if spec.model:  # its own model (classification, or builder pretrained): its own tokenizer too
        check_token_limits(task, suite, spec.model, spec.revision, where)
        base, source = _model_config(spec.model, spec.revision), f"student.model '{spec.model}'"
    else:
        base, source = teacher_config, "the teacher"
    n = _depth(base)
    try:
        if spec.builder == "layer_selection":
            layers = student_layers(spec, n)
            check_layer_map(layers, n, source)
            return _truncated(base, len(layers)), lambda: layers
        config = student_config(base, spec.config) if spec.builder == "config" else base
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
        first = teachers[0]
        teacher_config = _truncated(_model_config(first.model, first.revision), first.layers)
        student_config, student_map = _student_config(task, ts, teacher_config, where)
        for feature in ts.distill.features:
            check_feature_term(feature, student_config, teacher_config, student_map, where)
        if task.head == "embedding":
            from kdbench.distill.recipes.embedding import check_widths

            check_widths(ts, task, teacher_config.hidden_size, student_config.hidden_size)
        if task.head == "causal_lm" and ts.student.builder == "pretrained":
            from kdbench.distill.recipes.causal_lm import check_vocabularies

            check_vocabularies(ts, teacher_config.vocab_size, student_config.vocab_size)
        module.check_data(task, ts)
        task.eval_data(ts.data.eval_rows)


def check_evaluation(suite: SuiteConfig, tasks: Sequence[Task], models: dict[str, dict[str, str]],
                     revisions: dict[str, str | None]) -> None:
    """kdbench eval: every model (``{task: {role: id or folder}}``) has a config and tokenizer that
    fit the task's token limits, and the evaluation data loads, for every task. (Whether a model's
    weights are all in its checkpoint is checked as it loads: :func:`kdbench.models.loading.check_loaded`.)"""
    for task in tasks:
        ts = suite.for_task(task.name)
        for role, model_id in models[task.name].items():
            check_token_limits(task, ts, model_id, revisions.get(role), f"task {task.name}, {role}")
        task.eval_data(ts.data.eval_rows)
