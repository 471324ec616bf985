"""The transformers backend for causal language models: log-likelihoods with lm-eval's semantics,
rolling (whole-text) log-probabilities, greedy generation with stop strings, and per-token top-k
next-token distributions for perplexity and teacher–student token metrics.

Every scoring call reduces to *windows*: an input token list whose last ``len(targets)`` positions
predict ``targets``. Windows are batched longest first with LEFT padding (so every window's
predictions sit at the end of its row and only those logits are computed, ``logits_to_keep``),
position ids follow the attention mask, and results are put back in the callers' order.

Gradients are off with ``torch.no_grad`` rather than ``torch.inference_mode``: autocast caches the
bf16 copies of the weights only outside inference mode, and without that cache every decoding step
re-casts every weight (measured on SmolLM2-135M, batch 16, 2 CPU cores: 1.0 s vs 0.57 s per step).
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from kdbench import devices
from kdbench.backends import sharding
from kdbench.backends.batching import run_with_backoff, sorted_batches
from kdbench.backends.hf import autocast
from kdbench.errors import KdbenchError
from kdbench.registry import ENGINES, HEADS

# Memory cap for one forward pass's logits (rows × kept positions × vocabulary × 2 bytes in bf16, 4 in fp32):
# full-sequence scoring of long texts gets fewer rows per batch instead of gigabytes of logits.
LOGITS_BUDGET_BYTES = 256 * 2**20
DEFAULT_MAX_LENGTH = 2048  # when the config names no context size (as lm-eval)


@dataclass
class TokenDistributions:
    """Next-token distributions of one text, one row per predicted token (T tokens).

    ``rest_mass`` = 1 − Σ top-k probabilities: the probability of every token outside the top k,
    kept so that divergences can be approximated without the full vocabulary."""

    token_ids: np.ndarray  # (T,) int64: the text's tokens, i.e. the actual next tokens
    token_logprobs: np.ndarray  # (T,) float64: log p(actual next token | prefix)
    topk_ids: np.ndarray  # (T, k) int64, most probable first
    topk_logprobs: np.ndarray  # (T, k) float32
    rest_mass: np.ndarray  # (T,) float64 in [0, 1]

    def __len__(self) -> int:
        return int(self.token_ids.size)


@dataclass
class Generation:
    """One greedy continuation: the prompt's token ids, the generated ids (up to and including the
    first end-of-sequence token) and the text (decoded, cut before the first stop string)."""

    prompt_ids: list[int]
    ids: list[int]
    text: str


@dataclass
class _Scored:
    logprobs: np.ndarray  # (n,) log p of each target
    greedy: np.ndarray  # (n,) bool: target == argmax
    topk_ids: np.ndarray | None = None
    topk_logprobs: np.ndarray | None = None
    rest_mass: np.ndarray | None = None


def rolling_windows(tokens: list[int], prefix_token: int, max_length: int) -> Iterator[tuple[list[int], list[int]]]:
    """Disjoint windows ``(input, targets)`` that predict every token of ``tokens`` exactly once
    (lm-eval's ``get_rolling_token_windows`` with context_len = 1): the first window is
    ``[prefix] + tokens[:L-1]`` predicting ``tokens[:L]``; each later one predicts the next ≤ L
    tokens from the L tokens before them."""
    if not tokens:
        return
    first = min(max_length, len(tokens))
    yield [prefix_token] + tokens[: first - 1], tokens[:first]
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_length)
        end = done + n
        yield tokens[max(0, end - max_length - 1) : end - 1], tokens[end - n : end]
        done = end


class CausalLMBackend(ABC):
    """What every causal-LM engine shares: lm-eval's tokenisation, the windows that scoring reduces
    to, and the assembly of per-window scores into per-request results. An engine implements
    :meth:`_score` (log-probs, greedy flags and top-k rows of each window's targets) and
    :meth:`generate`.

    Tokenisation follows lm-eval's HF backend for causal models: no special tokens are added to
    texts; the prefix token (BOS, or EOS when the tokenizer has no BOS) conditions the first token
    of a text scored on its own and of an empty context.
    """

    name: str = ""  # the engine, as ``--backend`` names it

    def __init__(self, tokenizer: PreTrainedTokenizerBase, dtype: str, batch_size: int, max_length: int,
                 vocab_size: int, model_name: str):
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.vocab_size = vocab_size
        if tokenizer.bos_token_id is not None:
            self.prefix_token_id = tokenizer.bos_token_id
        elif tokenizer.eos_token_id is not None:
            self.prefix_token_id = tokenizer.eos_token_id
        else:
            raise KdbenchError(f"model {model_name}: the tokenizer has neither a BOS nor an EOS token")
        # left padding needs a pad id; any id works as padded positions are masked out
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.prefix_token_id

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def close(self) -> None:  # noqa: B027 (a no-op default, not abstract: only engines that hold resources override it)
        """Free what the engine holds (nothing for a transformers model its caller owns)."""

    def __enter__(self) -> CausalLMBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def _score(self, windows: Sequence[tuple[list[int], list[int]]], top_k: int) -> list[_Scored]:
        """Log-probs (and top-k rows when ``top_k``) of each window's targets, which the last
        ``len(targets)`` positions of its input predict."""

    @abstractmethod
    def generate_ids(self, prompt_ids: Sequence[list[int]], max_new_tokens: int, stop: Sequence[str] = ()) -> list[list[int]]:
        """Greedy continuation of each prompt (token ids), stopped at an end-of-sequence token (kept,
        nothing after it) or once a stop string is generated (its tokens kept)."""

    def generations(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[Generation]:
        """Greedy continuation of each prompt: its token ids and its text, cut before the first stop
        string. Prompts are left-truncated to leave room for ``max_new_tokens``."""
        stop = [s for s in stop if s]
        room = self._prompt_room(max_new_tokens)
        prompt_ids = [self.encode(p)[-room:] for p in prompts]
        new = self.generate_ids(prompt_ids, max_new_tokens, stop)
        return [Generation(p, ids, cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop))
                for p, ids in zip(prompt_ids, new)]

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """The texts of :meth:`generations`."""
        return [g.text for g in self.generations(prompts, max_new_tokens, stop)]

    def _prompt_room(self, max_new_tokens: int) -> int:
        room = self.max_length - max_new_tokens
        if room < 1:
            raise KdbenchError(f"generate: max_new_tokens {max_new_tokens} leaves no room in max_length {self.max_length}")
        return room

    # ------------------------------------------------------------------------------------------
    # scoring
    # ------------------------------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces of the context move to the continuation; the continuation
        is what ``encode(context + continuation)`` has beyond ``len(encode(context))`` tokens; an
        empty context is the prefix token."""
        if context == "":
            cont = self.encode(continuation)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(Σ log p(continuation tokens | context), every continuation token is the argmax) per
        ``(context, continuation)``, as lm-eval's ``loglikelihood``; the input is left-truncated to
        ``max_length`` tokens."""
        windows = []
        for context, continuation in requests:
            ctx, cont = self.encode_pair(context, continuation)
            if not cont:
                raise KdbenchError(f"loglikelihood: continuation {continuation!r} has no tokens")
            windows.append(((ctx + cont)[-(self.max_length + 1):][:-1], cont[-self.max_length:]))
        scored = self._score(windows, top_k=0)
        return [(float(s.logprobs.sum()), bool(s.greedy.all())) for s in scored]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """Σ log p of every token of each text, the first conditioned on the prefix token, in
        disjoint windows of ``max_length`` tokens (lm-eval's ``loglikelihood_rolling``)."""
        windows, owner = self._text_windows(texts)
        totals = np.zeros(len(texts))
        for i, s in zip(owner, self._score(windows, top_k=0)):
            totals[i] += s.logprobs.sum()
        return totals.tolist()

    def token_distributions(self, texts: Sequence[str], top_k: int) -> list[TokenDistributions]:
        """Per text and predicted token (windows as :meth:`loglikelihood_rolling`, so the sum of
        ``token_logprobs`` is the rolling log-likelihood): the top-k next-token ids and log-probs,
        the actual token's log-prob and the leftover mass 1 − Σ top-k probabilities."""
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        top_k = min(top_k, self.vocab_size)
        windows, owner = self._text_windows(texts)
        parts: list[list[tuple[list[int], _Scored]]] = [[] for _ in texts]
        for i, w, s in zip(owner, windows, self._score(windows, top_k=top_k)):
            parts[i].append((w[1], s))
        out = []
        for chunks in parts:
            if not chunks:
                out.append(TokenDistributions(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, top_k), np.int64),
                                              np.zeros((0, top_k), np.float32), np.zeros(0)))
                continue
            out.append(TokenDistributions(
                token_ids=np.concatenate([np.asarray(t, dtype=np.int64) for t, _ in chunks]),
                token_logprobs=np.concatenate([s.logprobs for _, s in chunks]),
                topk_ids=np.concatenate([s.topk_ids for _, s in chunks]),
                topk_logprobs=np.concatenate([s.topk_logprobs for _, s in chunks]),
                rest_mass=np.concatenate([s.rest_mass for _, s in chunks]),
            ))
        return out

    def _text_windows(self, texts: Sequence[str]) -> tuple[list[tuple[list[int], list[int]]], list[int]]:
        windows, owner = [], []
        for i, text in enumerate(texts):
            for w in rolling_windows(self.encode(text), self.prefix_token_id, self.max_length):
                windows.append(w)
                owner.append(i)
        return windows, owner


@HEADS.register("causal_lm", auto_class="AutoModelForCausalLM", pipeline_tag="text-generation", generates=True)
@ENGINES.register("hf", description="transformers on the run's device (every head)")
class HFCausalLM(CausalLMBackend):
    """Inference for a transformers causal LM (``AutoModelForCausalLM``), batched and in bf16
    autocast (``dtype="fp32"`` for exact computations)."""

    name = "hf"

    @classmethod
    def check_setup(cls, *, device=None, processes: int = 1, tensor_parallel_size: int = 1) -> None:
        """Nothing to check: transformers runs wherever the model was placed."""

    @classmethod
    def open(cls, model, tokenizer, source: str, *, dtype: str, batch_size: int, max_length: int | None,
             tensor_parallel_size: int = 1) -> HFCausalLM:
        return cls(model, tokenizer, dtype, batch_size, max_length)

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dtype: str = "bf16",
                 batch_size: int = 16, max_length: int | None = None):
        self.model = model.eval()
        super().__init__(tokenizer, dtype, batch_size, max_length or _context_size(model),
                         model.get_output_embeddings().weight.shape[0], model.name_or_path)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _score(self, windows: Sequence[tuple[list[int], list[int]]], top_k: int) -> list[_Scored]:
        """Log-probs (and top-k rows when ``top_k``) of each window's targets, which the last
        ``len(targets)`` positions of its input predict."""
        out: list[_Scored | None] = [None] * len(windows)
        lengths = [len(inp) for inp, _ in windows]
        def run(idx: np.ndarray) -> None:
            rows = [windows[i] for i in idx]
            keep = max(len(t) for _, t in rows)
            ids, mask = self._left_pad([inp for inp, _ in rows])
            kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                use_cache=False, **kwargs).logits[:, -keep:]
            for row, i in enumerate(idx):
                targets = windows[i][1]
                logp = torch.log_softmax(logits[row, keep - len(targets):].float(), dim=-1)
                tgt = torch.tensor(targets, device=logp.device)
                scored = _Scored(logp.gather(-1, tgt[:, None])[:, 0].double().cpu().numpy(),
                                 (logp.argmax(-1) == tgt).cpu().numpy())
                if top_k:
                    values, indices = logp.topk(top_k, dim=-1)
                    scored.topk_ids = indices.cpu().numpy().astype(np.int64)
                    scored.topk_logprobs = values.cpu().numpy()
                    # 1 − Σ top-k p, computed as −expm1(logsumexp) to keep precision near 0
                    scored.rest_mass = (-torch.expm1(torch.logsumexp(values.double(), -1))).clamp(0, 1).cpu().numpy()
                out[i] = scored

        batches = self._batches(lengths, [len(t) for _, t in windows])
        with torch.no_grad(), autocast(self.dtype, self.device):
            for idx in sharding.mine(batches):
                self.batch_size = run_with_backoff(idx, self.batch_size, run)
        sharding.gather(out, batches)
        return out  # type: ignore[return-value]

    def continuation_log_probs(self, prompt_ids: Sequence[list[int]],
                               continuations: Sequence[Sequence[int]]) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, (T, V) float32 log-probabilities of the next token at each of the T tokens of
        continuation ``index``, on the CPU), batch by batch in a fixed order that depends only on the
        lengths; inputs are left-truncated to ``max_length`` and a longer continuation keeps its last
        ``max_length`` tokens. Full rows, for exact teacher–student values on generated text."""
        windows = [((list(p) + list(c))[-(self.max_length + 1):][:-1], list(c)[-self.max_length:])
                   for p, c in zip(prompt_ids, continuations)]
        keep_rows = [i for i, (_, t) in enumerate(windows) if t]
        batches = self._batches([len(windows[i][0]) for i in keep_rows], [len(windows[i][1]) for i in keep_rows])
        for batch in batches:
            # yield outside the no_grad block: a generator suspended inside it would leave gradients off
            # for its caller, and one never finished would restore the wrong state when collected
            with torch.no_grad(), autocast(self.dtype, self.device):
                idx = [keep_rows[b] for b in batch]
                keep = max(len(windows[i][1]) for i in idx)
                ids, mask = self._left_pad([windows[i][0] for i in idx])
                kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                    use_cache=False, **kwargs).logits[:, -keep:]
                rows = [(i, torch.log_softmax(logits[row, keep - len(windows[i][1]):].float(), dim=-1).cpu())
                        for row, i in enumerate(idx)]
            yield from rows

    def _batches(self, lengths: Sequence[int], kept: Sequence[int]) -> list[np.ndarray]:
        """Length-sorted batches of at most ``batch_size`` rows, cut further so one batch's kept
        logits stay under LOGITS_BUDGET_BYTES."""
        per_token = self.vocab_size * (2 if self.dtype == "bf16" else 4)
        batches = []
        for idx in sorted_batches(lengths, self.batch_size):
            start = 0
            while start < len(idx):
                stop = start + 1
                while stop < len(idx) and (stop + 1 - start) * max(kept[i] for i in idx[start:stop + 1]) * per_token <= LOGITS_BUDGET_BYTES:
                    stop += 1
                batches.append(idx[start:stop])
                start = stop
        return batches

    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r):] = torch.tensor(r)
                mask[i, width - len(r):] = 1
        placed = devices.to_device({"ids": ids, "mask": mask}, self.device)
        return placed["ids"], placed["mask"]


    # ------------------------------------------------------------------------------------------
    # generation
    # ------------------------------------------------------------------------------------------
    def generate_ids(self, prompt_ids: Sequence[list[int]], max_new_tokens: int, stop: Sequence[str] = ()) -> list[list[int]]:
        """Greedy continuation of each prompt (``model.generate``, left padding, batches of similar
        length), stopped at EOS or at a stop string (transformers' ``stop_strings``)."""
        stop = [s for s in stop if s]
        eos = self.model.generation_config.eos_token_id
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=eos, pad_token_id=self.pad_token_id,
            stop_strings=list(stop) or None,
        )
        eos_ids = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
        out: list[list[int] | None] = [None] * len(prompt_ids)

        def run(idx: np.ndarray) -> None:
            ids, mask = self._left_pad([list(prompt_ids[i]) for i in idx])
            generated = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                            tokenizer=self.tokenizer if stop else None)
            new = generated[:, ids.shape[1]:].cpu().tolist()
            for row, i in enumerate(idx):
                out[i] = until_eos(new[row], eos_ids)

        batches = sorted_batches([len(p) for p in prompt_ids], self.batch_size)
        with torch.no_grad(), autocast(self.dtype, self.device):
            for idx in sharding.mine(batches):
                self.batch_size = run_with_backoff(idx, self.batch_size, run)
        sharding.gather(out, batches)
        return out  # type: ignore[return-value]


def until_eos(tokens: Sequence[int], eos_ids: Sequence[int]) -> list[int]:
    """``tokens`` up to and including the first end-of-sequence token (what follows is padding)."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return list(tokens[: i + 1])
    return list(tokens)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = min((pos for s in stop if s and (pos := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _context_size(model: PreTrainedModel) -> int:
    config = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_LENGTH
