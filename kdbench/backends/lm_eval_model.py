"""kdbench's causal-LM backend as an lm-evaluation-harness model, registered as ``kdbench``.

Importing this module registers the model; lm-eval discovers models only from its own registry
(0.4.13 has no plugin entry points), so ``lm_eval --model kdbench`` needs this import first:
``python -m kdbench.lm_eval_cli`` is lm-eval's own command line after that import::

    python -m kdbench.lm_eval_cli --model kdbench \\
        --model_args pretrained=HuggingFaceTB/SmolLM2-135M-Instruct,dtype=bf16 --batch_size 16 \\
        --tasks kdbench_sst2 --include_path kdbench/tasks/lm_eval_tasks --limit 50

(lm-eval's command line always passes its own ``--batch_size``, default 1, so the batch size goes
there and not in ``--model_args``.)

From Python, ``import kdbench.backends.lm_eval_model`` and then
``lm_eval.simple_evaluate(model="kdbench", model_args="pretrained=...")``; or wrap a model already in
memory with :meth:`KdbenchLM.from_model` and pass the object as ``model=``.

Every request goes to a kdbench causal-LM backend (lm-eval's tokenisation and scoring rules,
batched, bf16 or exact fp32): :class:`~kdbench.backends.causal_lm.HFCausalLM` by default,
vLLM's offline engine with ``backend=vllm``. Generation is greedy only.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

# lm-eval fills its model registry from lm_eval.models only while the registry is empty; registering
# "kdbench" first would hide "hf" and the rest, so they are registered before ours.
import lm_eval.models  # noqa: F401
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs

from kdbench.backends.causal_lm import CausalLMBackend, HFCausalLM
from kdbench.errors import KdbenchError

logger = logging.getLogger(__name__)
DTYPE_ALIASES = {"bf16": "bf16", "bfloat16": "bf16", "fp32": "fp32", "float32": "fp32", "float": "fp32"}
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default when a task names none
# generation arguments that leave greedy decoding unchanged (sampling parameters are inert without
# do_sample); anything else would change the output, so it is refused rather than ignored
_GREEDY_NEUTRAL = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k", "num_beams"}


@register_model("kdbench")
class KdbenchLM(LM):
    """``--model kdbench --model_args pretrained=ID_OR_FOLDER[,dtype=bf16|fp32][,max_length=N][,revision=REV]
    [,backend=hf|vllm]`` with lm-eval's ``--batch_size N`` and ``--device``; from Python, ``batch_size`` may be a model
    argument instead (``auto`` batch sizes mean the default, 16). ``max_length`` (tokens) defaults
    to the model's context size; prompts are left-truncated to it."""

    def __init__(self, pretrained: str, dtype: str = "bf16", batch_size: int | str | None = None,
                 max_length: int | None = None, revision: str | None = None, device: str | None = None,
                 max_batch_size: int | None = None, backend: str = "hf", **unknown: Any):
        super().__init__()
        if unknown:
            raise KdbenchError(f"lm-eval model kdbench: unknown model_args {', '.join(sorted(unknown))} "
                               "(known: pretrained, dtype, batch_size, max_length, revision, backend)")
        if not isinstance(pretrained, str):
            raise KdbenchError("lm-eval model kdbench: pretrained must be a hub id or a folder; "
                               "wrap a loaded model with KdbenchLM.from_model")
        from kdbench.backends import engines
        from kdbench.models.loading import load_for_head, load_tokenizer

        where = _device(device)
        engines.check(backend, [], device=where)
        tokenizer = load_tokenizer(pretrained, revision)
        # vLLM loads the weights itself from the id or folder; hf loads them here
        model = None if engines.loads_weights(backend) else load_for_head(pretrained, "causal_lm", revision, device=where)
        self._init_backend(engines.causal_lm(backend, model, tokenizer, pretrained, _dtype(dtype),
                                             _batch_size(batch_size), _int_or_none(max_length, "max_length")),
                           pretrained)

    @classmethod
    def from_backend(cls, backend: CausalLMBackend, name: str | None = None) -> KdbenchLM:
        """An lm-eval model over an existing backend (no loading)."""
        self = cls.__new__(cls)
        LM.__init__(self)
        self._init_backend(backend, name or backend.model.name_or_path)
        return self

    @classmethod
    def from_model(cls, model, tokenizer, dtype: str = "bf16", batch_size: int = DEFAULT_BATCH_SIZE,
                   max_length: int | None = None, name: str | None = None) -> KdbenchLM:
        """An lm-eval model over a transformers causal LM already in memory."""
        return cls.from_backend(HFCausalLM(model, tokenizer, _dtype(dtype), batch_size, max_length), name)

    def _init_backend(self, backend: CausalLMBackend, name: str) -> None:
        self.backend = backend
        self.name = name
        self._device = backend.device

    # ------------------------------------------------------------------------------------------
    # the three request types
    # ------------------------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """(Σ log p(continuation | context), continuation is the greedy one) per request."""
        args = [req.args for req in requests]
        out = self.backend.loglikelihood([(ctx, cont) for ctx, cont in args])
        for a, res in zip(args, out):
            self.cache_hook.add_partial("loglikelihood", a, res)
        return out

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        """Σ log p of every token of each text (disjoint windows of the model's context)."""
        texts = [req.args[0] for req in requests]
        out = self.backend.loglikelihood_rolling(texts)
        for text, res in zip(texts, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), res)
        return out

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy continuations, cut before the first of ``until`` (and at EOS), at most
        ``max_gen_toks`` new tokens; requests with the same settings are batched together."""
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[_greedy_settings(req.args[1])].append(i)
        for (until, max_gen_toks), idx in groups.items():
            texts = self.backend.generate([requests[i].args[0] for i in idx], max_gen_toks, list(until))
            for i, text in zip(idx, texts):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------
    # what lm-eval asks of a model besides requests
    # ------------------------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.backend.tokenizer.name_or_path.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.backend.tokenizer.chat_template or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.backend.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                          add_generation_prompt=add_generation_prompt)

    def get_model_info(self) -> dict:
        return {"model_name": self.name, "kdbench_dtype": self.backend.dtype,
                "kdbench_batch_size": self.backend.batch_size, "max_length": self.backend.max_length}


def _greedy_settings(gen_kwargs: dict) -> tuple[tuple[str, ...], int]:
    """``(until, max_gen_toks)`` of one request, refusing what greedy decoding cannot honour."""
    if not isinstance(gen_kwargs, dict):
        raise KdbenchError(f"lm-eval model kdbench: generation arguments must be a mapping, got {gen_kwargs!r}")
    kwargs = normalize_gen_kwargs(gen_kwargs, DEFAULT_MAX_GEN_TOKS)
    if kwargs.get("do_sample"):
        raise KdbenchError("lm-eval model kdbench: generation is greedy only; the task asks for sampling "
                           f"(do_sample=True / temperature={kwargs.get('temperature')}): set do_sample: false")
    if int(kwargs.get("num_beams", 1) or 1) != 1:
        raise KdbenchError(f"lm-eval model kdbench: beam search (num_beams={kwargs['num_beams']}) is not supported")
    other = sorted(set(kwargs) - _GREEDY_NEUTRAL)
    if other:
        raise KdbenchError(f"lm-eval model kdbench: unsupported generation arguments {', '.join(other)} "
                           "(greedy decoding takes until and max_gen_toks)")
    return tuple(kwargs["until"]), int(kwargs["max_gen_toks"])


def _device(requested: str | None):
    """The device to load on: lm-eval's ``--device`` read as kdbench's device setting (None: auto).
    A GPU asked for where torch sees none falls back to the CPU with a warning, as lm-eval's ``hf``
    model does (its command line passes ``cuda`` unless told otherwise)."""
    import torch

    from kdbench import devices

    setting = requested or "auto"
    if setting.startswith(devices.CUDA) and not torch.cuda.is_available():
        logger.warning("lm-eval model kdbench: device %s is not available; using the CPU", requested)
        setting = "auto"
    return devices.resolve(setting)


def _dtype(value: str) -> str:
    try:
        return DTYPE_ALIASES[str(value).lower()]
    except KeyError:
        raise KdbenchError(f"lm-eval model kdbench: dtype {value!r} (known: bf16, fp32)") from None


def _batch_size(value: int | str | None) -> int:
    if value is None or str(value).startswith("auto"):
        return DEFAULT_BATCH_SIZE
    size = _int_or_none(value, "batch_size")
    if size is None or size < 1:
        raise KdbenchError(f"lm-eval model kdbench: batch_size must be a positive integer, got {value!r}")
    return size


def _int_or_none(value: Any, key: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise KdbenchError(f"lm-eval model kdbench: {key} must be an integer, got {value!r}") from None
