"""Tokenisation and length-aware batching shared by inference and training."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int
) -> list[dict[str, list[int]]]:
    """Tokenise without padding: one feature dict per example (padding happens per batch)."""
    args = (list(texts),) if pairs is None else (list(texts), list(pairs))
    enc = tokenizer(*args, truncation=True, max_length=max_length)
    return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]


def collate(tokenizer: PreTrainedTokenizerBase, features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest example (dynamic padding)."""
    return tokenizer.pad(list(features), padding="longest", return_tensors="pt")


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches over examples sorted by length (longest first), for inference: little padding,
    and the caller restores the original order by index."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, mega: int = 50
) -> list[np.ndarray]:
    """Shuffled training batches of similar length: shuffle, sort inside chunks of ``mega`` batches,
    cut, then shuffle the batches (as transformers' LengthGroupedSampler). Cuts padding while
    keeping every epoch's batches random."""
    lengths = np.asarray(lengths)
    perm = rng.permutation(len(lengths))
    chunk = batch_size * mega
    batches = []
    for start in range(0, len(perm), chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
