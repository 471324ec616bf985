"""Which engine answers a causal-LM task's requests (``eval.backend`` / ``--backend``): the engines
are registered on their classes (``@ENGINES.register(name, heads=..., ...)``: the heads an engine
serves, all when it names none; whether it splits a model across GPUs; whether it loads the weights
itself from the model's id or folder).

Tasks call :func:`for_task` and never look at the engine; :func:`check` runs before any work so a
run that cannot use the requested engine stops with one line instead of failing half-way."""
from __future__ import annotations

from collections.abc import Iterable

from kdbench.errors import KdbenchError
from kdbench.registry import ENGINES


def check(backend: str, tasks: Iterable, *, device=None, processes: int = 1, tensor_parallel_size: int = 1) -> None:
    """Raise a one-line error when ``backend`` cannot serve every task on ``device`` (unknown name,
    its package not installed, a head it has no path for, a device or GPU count it cannot use)."""
    meta = ENGINES.meta(backend, "eval.backend")
    if tensor_parallel_size != 1 and not meta.get("tensor_parallel"):
        raise KdbenchError(f"eval.tensor_parallel_size {tensor_parallel_size}: the {backend} engine runs each model on "
                           f"one device; tensor parallelism is {', '.join(ENGINES.names(tensor_parallel=True))}'s")
    heads = meta.get("heads")
    for task in tasks:
        if heads is not None and task.head not in heads:
            raise KdbenchError(f"--backend {backend}: task {task.name} ({task.family}, head {task.head}) has no "
                               f"{backend} path; {backend} serves {', '.join(heads)} tasks only (use --backend hf)")
    ENGINES.get(backend).check_setup(device=device, processes=processes, tensor_parallel_size=tensor_parallel_size)


def loads_weights(backend: str) -> bool:
    """Whether the engine loads a model's weights itself from its id or folder (nothing to load first)."""
    return bool(ENGINES.meta(backend).get("loads_weights"))


def causal_lm(backend: str, model, tokenizer, source: str, dtype: str, batch_size: int,
              max_length: int | None, tensor_parallel_size: int = 1):
    """An engine for one loaded model (``model`` None for an engine that :func:`loads_weights`
    from ``source``, the hub id or folder the model came from)."""
    return ENGINES.get(backend).open(model, tokenizer, source, dtype=dtype, batch_size=batch_size,
                                     max_length=max_length, tensor_parallel_size=tensor_parallel_size)


def for_task(model, settings, max_length: int | None):
    """The engine a task's evaluation settings name (``eval.backend``, ``eval.tensor_parallel_size``)
    for a ``LoadedModel``."""
    return causal_lm(settings.eval.backend, model.model, model.tokenizer, model.source, settings.dtype,
                     settings.eval.batch_size, max_length, settings.eval.tensor_parallel_size)
