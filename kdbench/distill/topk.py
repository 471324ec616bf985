"""A top-k teacher cache for token-level KD of causal LMs: the teacher runs once over the training
set, and every epoch, seed or loss of a sweep reads its distributions from disk.

Full next-token distributions do not fit (SmolLM2: 49,152 floats per token), so each scored
position keeps the teacher's k most probable tokens under the temperature-softened distribution
p_T = softmax(z_t / T), their log-probabilities, and the leftover mass r = 1 − Σ_{top k} p_T. KD then
compares k + 1 buckets — the k tokens and "everything else" — of teacher and student:

    p̃ = (p_T(v_1), …, p_T(v_k), r) / Z,  q̃ = (q_T(v_1), …, q_T(v_k), 1 − Σ_j q_T(v_j)),  Z = Σ p̃ = 1 up to rounding

and the registry loss D(p̃, q̃) (its own renormalising log-softmax makes Z exactly 1). For forward
KL this is the divergence of the distributions merged on the tail, a lower bound of the full-vocabulary
KL (data-processing inequality) that is exact on the top k and close to it when r is small.

Entries live in the teacher cache (``kdbench.distill.teacher_cache``), keyed by teacher id and
revision, a content hash of the tokenised training set and its loss masks, k, T and the autocast
dtype; a corrupt or mismatched entry is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from kdbench import devices
from kdbench.backends.batching import sorted_batches
from kdbench.backends.hf import autocast
from kdbench.distill.teacher_cache import cached_outputs
from kdbench.distill.tokens import scored_positions
from kdbench.models.cache import cache_key

CACHE_VERSION = 1
_ARRAYS = ("offsets", "ids", "logprobs", "rest")
_TINY = 1e-20  # floor for the leftover mass: top-k can hold all of it up to rounding, and log 0 = −inf


@dataclass
class TopK:
    """Teacher top-k per scored position; example i owns rows ``offsets[i]:offsets[i + 1]``, in
    the order of its scored positions (the positions t whose next token t + 1 is scored)."""

    offsets: np.ndarray  # (N + 1,) int64
    ids: np.ndarray  # (R, k) int32, most probable first
    logprobs: np.ndarray  # (R, k) float32: log p_T of those tokens
    rest: np.ndarray  # (R,) float32: leftover mass 1 − Σ_k p_T, in [0, 1]

    def rows(self, examples: Sequence[int]) -> np.ndarray:
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in examples])


def data_hash(features: Sequence[dict], loss_masks: Sequence[Sequence[int]]) -> str:
    """sha256 of the tokenised training set: every example's token ids and loss mask, in order."""
    h = hashlib.sha256()
    for feature, mask in zip(features, loss_masks):
        h.update(json.dumps([feature["input_ids"], list(mask)]).encode())
        h.update(b"\n")
    return h.hexdigest()


def compute_topk(
    teacher: torch.nn.Module, features: Sequence[dict], loss_masks: Sequence[Sequence[int]], collate, *,
    k: int, temperature: float, dtype: str = "bf16", batch_size: int = 16,
) -> TopK:
    """One teacher pass (no gradients, ``dtype`` autocast) over the training set."""
    counts = np.array([sum(m[1:]) for m in loss_masks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids = np.zeros((offsets[-1], k), dtype=np.int32)
    logprobs = np.zeros((offsets[-1], k), dtype=np.float32)
    rest = np.zeros(offsets[-1], dtype=np.float32)
    device = next(teacher.parameters()).device
    lengths = [len(f["input_ids"]) for f in features]
    with torch.no_grad(), autocast(dtype, device):
        for idx in sorted_batches(lengths, batch_size):
            batch = devices.to_device(collate([features[i] for i in idx]), device)
            keep = scored_positions(batch, [loss_masks[i] for i in idx])
            if not keep.any():
                continue
            log_p = F.log_softmax(teacher(**batch).logits[:, :-1][keep].float() / temperature, dim=-1)
            top = log_p.topk(k, dim=-1)  # sorted, most probable first
            rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx])
            ids[rows] = top.indices.cpu().numpy()
            logprobs[rows] = top.values.cpu().numpy()
            rest[rows] = (1.0 - top.values.exp().sum(-1)).clamp(0.0, 1.0).cpu().numpy()
    return TopK(offsets, ids, logprobs, rest)


def cached_topk(
    teacher: torch.nn.Module, teacher_id: str, revision: str | None, features: Sequence[dict],
    loss_masks: Sequence[Sequence[int]], collate, *, k: int, temperature: float, dtype: str = "bf16",
    batch_size: int = 16, layers: int | None = None,
) -> tuple[TopK, bool, str]:
    """The teacher's top-k over the training set, from the cache when an entry with the same key
    exists, else computed and stored. ``layers``: the teacher is ``teacher_id`` truncated to its first
    K layers. Returns (top-k, reused, key)."""
    key = {"teacher": teacher_id, "revision": revision, "data_sha256": data_hash(features, loss_masks), "k": k,
           "temperature": temperature, "dtype": dtype, "version": CACHE_VERSION, **({"layers": layers} if layers else {}),
           **devices.cache_fields(next(teacher.parameters()).device)}
    scored = sum(sum(m[1:]) for m in loss_masks)

    def compute() -> dict[str, np.ndarray]:
        t = compute_topk(teacher, features, loss_masks, collate, k=k, temperature=temperature, dtype=dtype,
                         batch_size=batch_size)
        return {"offsets": t.offsets, "ids": t.ids, "logprobs": t.logprobs, "rest": t.rest}

    t, reused = cached_outputs("teacher_topk", key, _ARRAYS, compute,
                               rows={"offsets": len(features) + 1, "ids": scored, "logprobs": scored, "rest": scored})
    return TopK(t["offsets"], t["ids"], t["logprobs"], t["rest"]), reused, cache_key(**key)


def bucket_log_probs(log_probs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(P, V) log-probabilities -> (P, k + 1): the k tokens ``ids`` and the rest, log(1 − Σ_k q)."""
    top = log_probs.gather(-1, ids)
    rest = torch.log1p(-top.exp().sum(-1).clamp(max=1.0 - 1e-7)).clamp_min(math.log(_TINY))
    return torch.cat([top, rest[:, None]], dim=-1)


def teacher_buckets(topk: TopK, rows: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (P, k), teacher log-probabilities (P, k + 1)) of the cached rows."""
    ids = torch.from_numpy(topk.ids[rows].astype(np.int64)).to(device)
    rest = torch.from_numpy(topk.rest[rows]).clamp_min(_TINY).log()
    return ids, torch.cat([torch.from_numpy(topk.logprobs[rows]), rest[:, None]], dim=-1).to(device)
