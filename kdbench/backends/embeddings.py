"""Bi-encoder embeddings and exact dense search.

An embedding is the sentence-transformers definition used by MiniLM/MPNet sentence encoders:
the mean of the last hidden states over the real tokens (attention mask), L2-normalised, so a dot
product is the cosine similarity:

    e = normalize( Σ_t m_t · h_t / max(Σ_t m_t, 1e-9) )

Inference runs under ``torch.inference_mode`` with bf16 autocast (``dtype="bf16"``) on batches
sorted by length, on the model's device (sharded across launched processes, halving the batch on
out of memory); pooling and normalisation happen in fp32 and the original order is restored.
Search is exact (brute force): the query × corpus score matrix in blocks, ``torch.topk`` per block.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdbench import devices, progress
from kdbench.backends import sharding
from kdbench.backends.batching import collate, encode, run_with_backoff, sorted_batches
from kdbench.backends.hf import autocast
from kdbench.registry import HEADS


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t m_t·h_t / max(Σ_t m_t, 1e-9): (batch, length, dim), (batch, length) -> (batch, dim), in fp32."""
    m = mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


# The embedding is the mean of the last hidden states: a BERT pooler missing from a
# sentence-transformers checkpoint (paraphrase-MiniLM-L3-v2) is never read.
@HEADS.register("embedding", auto_class="AutoModel", pipeline_tag="feature-extraction", unread=["pooler."])
class HFEmbedder:
    """Normalised mean-pooled embeddings from a transformers encoder (``AutoModel``)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dtype: str = "bf16",
                 max_length: int = 256, batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_length = max_length
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed_features(self, features: Sequence[dict], desc: str | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors for tokenised ``features``, in their order."""
        out = np.empty((len(features), self.dim), dtype=np.float32)

        def run(idx: np.ndarray) -> None:
            batch = devices.to_device(collate(self.tokenizer, [features[i] for i in idx]), self.model.device)
            hidden = self.model(**batch).last_hidden_state
            out[idx] = F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1).cpu().numpy()

        batches = sorted_batches([len(f["input_ids"]) for f in features], self.batch_size)
        with torch.inference_mode(), autocast(self.dtype, self.model.device):
            for idx in progress.bar(sharding.mine(batches), desc=desc, disable=desc is None, unit="batch"):
                self.batch_size = run_with_backoff(idx, self.batch_size, run)
        sharding.gather(out, batches)
        return out

    def embed(self, texts: Sequence[str], desc: str | None = None, max_length: int | None = None) -> np.ndarray:
        features = encode(self.tokenizer, texts, None, max_length or self.max_length)
        return self.embed_features(features, desc)


def search(queries: np.ndarray, docs: np.ndarray, top_k: int, *, exclude: np.ndarray | None = None,
           query_block: int = 256, doc_block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``top_k`` documents per query by dot product (cosine for unit vectors), in fp32.

    ``exclude[i]`` is a document index query i may not retrieve (BEIR drops a document whose id is
    the query's own), -1 for none. The (queries × documents) score matrix is never held whole: each
    block of ``query_block`` × ``doc_block`` scores is reduced with ``torch.topk`` and merged with the
    best so far. Returns (indices (n, k) int64, scores (n, k) float32), best first; k = min(top_k,
    number of documents, less one when a document is excluded); ties are ordered by ``torch.topk`` (callers that need a convention re-sort).
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    d = torch.from_numpy(np.ascontiguousarray(docs, dtype=np.float32))
    # a query's excluded document never counts towards its k (at most one per query)
    k = min(top_k, d.shape[0] - int(exclude is not None and bool((np.asarray(exclude) >= 0).any())))
    idx_out = np.empty((q.shape[0], k), dtype=np.int64)
    score_out = np.empty((q.shape[0], k), dtype=np.float32)
    with torch.inference_mode():
        for qs in range(0, q.shape[0], query_block):
            qb = q[qs:qs + query_block]
            best_s = torch.full((qb.shape[0], 0), float("-inf"))
            best_i = torch.empty((qb.shape[0], 0), dtype=torch.int64)
            for ds in range(0, d.shape[0], doc_block):
                scores = qb @ d[ds:ds + doc_block].T
                if exclude is not None:
                    ex = torch.as_tensor(exclude[qs:qs + query_block], dtype=torch.int64) - ds
                    rows = torch.nonzero((ex >= 0) & (ex < scores.shape[1])).flatten()
                    scores[rows, ex[rows]] = float("-inf")
                s, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                cand_s, cand_i = torch.cat([best_s, s], dim=1), torch.cat([best_i, i + ds], dim=1)
                s, pos = torch.topk(cand_s, min(k, cand_s.shape[1]), dim=1)
                best_s, best_i = s, torch.gather(cand_i, 1, pos)
            idx_out[qs:qs + qb.shape[0]] = best_i.numpy()
            score_out[qs:qs + qb.shape[0]] = best_s.numpy()
    return idx_out, score_out
