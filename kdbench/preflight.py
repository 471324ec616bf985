"""Pre-flight: each task's resolved suite against its models' configs and its data, before any work
(this module: what evaluation needs; ``train-and-eval`` adds :mod:`kdbench.distill.preflight`).

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

from collections.abc import Sequence
from functools import lru_cache

from kdbench.config import SuiteConfig
from kdbench.errors import KdbenchError
from kdbench.tasks.base import RunSettings, Task

_NO_LIMIT = 10**6  # transformers' model_max_length when a tokenizer does not know its model's limit (1e30)


@lru_cache(maxsize=64)
def model_config(model_id: str, revision: str | None):
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


def check_token_limits(task: Task, suite: SuiteConfig, model_id: str, revision: str | None, where: str) -> None:
    """Every token limit of the task leaves room for text after the model's special tokens, and is
    within what the model reads (its tokenizer's ``model_max_length``, else its position table)."""
    tokenizer = _tokenizer(model_id, revision)
    config = model_config(model_id, revision)
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
