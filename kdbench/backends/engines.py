"""Which engine answers a causal-LM task's requests (``eval.backend`` / ``--backend hf|vllm``).

Tasks call :func:`causal_lm` and never look at the engine; :func:`check` runs before any work so a
run that cannot use the requested engine stops with one line instead of failing half-way."""
from __future__ import annotations

from collections.abc import Iterable

from kdbench.backends.causal_lm import CausalLMBackend, HFCausalLM
from kdbench.errors import KdbenchError

BACKENDS = ("hf", "vllm")
VLLM_HEADS = ("causal_lm",)  # vLLM serves generation and token log-probabilities, not task heads


def check(backend: str, tasks: Iterable, *, device=None, processes: int = 1, tensor_parallel_size: int = 1) -> None:
    """Raise a one-line error when ``backend`` cannot serve every task on ``device`` (unknown name,
    vLLM not installed, a head vLLM has no path for, a device or GPU count vLLM's build cannot use)."""
    if backend not in BACKENDS:
        raise KdbenchError(f"eval.backend: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend != "vllm":
        if tensor_parallel_size != 1:
            raise KdbenchError(f"eval.tensor_parallel_size {tensor_parallel_size}: tensor parallelism is vLLM's "
                               "(--backend vllm); the hf backend runs each model on one device")
        return
    for task in tasks:
        if task.head not in VLLM_HEADS:
            raise KdbenchError(f"--backend vllm: task {task.name} ({task.family}, head {task.head}) has no vLLM path; "
                               "vLLM serves causal-LM tasks only (use --backend hf)")
    if processes > 1:
        raise KdbenchError(f"--backend vllm under {processes} launched processes: vLLM parallelises one engine itself "
                           "(eval.tensor_parallel_size); run it in one process")
    from kdbench.backends.vllm_lm import check_device, require_vllm

    require_vllm()
    if device is not None:
        check_device(device, tensor_parallel_size)


def causal_lm(backend: str, model, tokenizer, source: str, dtype: str, batch_size: int,
              max_length: int | None, tensor_parallel_size: int = 1) -> CausalLMBackend:
    """An engine for one loaded model: ``hf`` runs the loaded transformers model; ``vllm`` loads
    ``source`` (the hub id or folder the model came from) into vLLM's offline engine, split across
    ``tensor_parallel_size`` GPUs."""
    if backend == "vllm":
        from kdbench.backends.vllm_lm import VLLMCausalLM

        return VLLMCausalLM(source, tokenizer, dtype, batch_size, max_length, tensor_parallel_size=tensor_parallel_size)
    return HFCausalLM(model, tokenizer, dtype, batch_size, max_length)


def for_task(model, settings, max_length: int | None) -> CausalLMBackend:
    """The engine a task's evaluation settings name (``eval.backend``, ``eval.tensor_parallel_size``)
    for a ``LoadedModel``."""
    return causal_lm(settings.eval.backend, model.model, model.tokenizer, model.source, settings.dtype,
                     settings.eval.batch_size, max_length, settings.eval.tensor_parallel_size)
