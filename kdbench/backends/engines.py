"""Which engine answers a causal-LM task's requests (``eval.backend`` / ``--backend hf|vllm``).

Tasks call :func:`causal_lm` and never look at the engine; :func:`check` runs before any work so a
run that cannot use the requested engine stops with one line instead of failing half-way."""
from __future__ import annotations

from collections.abc import Iterable

from kdbench.backends.causal_lm import CausalLMBackend, HFCausalLM
from kdbench.errors import KdbenchError

BACKENDS = ("hf", "vllm")
VLLM_HEADS = ("causal_lm",)  # vLLM serves generation and token log-probabilities, not task heads


def check(backend: str, tasks: Iterable) -> None:
    """Raise a one-line error when ``backend`` cannot serve every task (unknown name, vLLM not
    installed, a head vLLM has no path for)."""
    if backend not in BACKENDS:
        raise KdbenchError(f"eval.backend: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend != "vllm":
        return
    for task in tasks:
        if task.head not in VLLM_HEADS:
            raise KdbenchError(f"--backend vllm: task {task.name} ({task.family}, head {task.head}) has no vLLM path; "
                               "vLLM serves causal-LM tasks only (use --backend hf)")
    from kdbench.backends.vllm_lm import require_vllm

    require_vllm()


def causal_lm(backend: str, model, tokenizer, source: str, dtype: str, batch_size: int,
              max_length: int | None) -> CausalLMBackend:
    """An engine for one loaded model: ``hf`` runs the loaded transformers model; ``vllm`` loads
    ``source`` (the hub id or folder the model came from) into vLLM's offline engine."""
    if backend == "vllm":
        from kdbench.backends.vllm_lm import VLLMCausalLM

        return VLLMCausalLM(source, tokenizer, dtype, batch_size, max_length)
    return HFCausalLM(model, tokenizer, dtype, batch_size, max_length)
