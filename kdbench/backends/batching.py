"""Tokenisation and length-aware batching shared by inference and training."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

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


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's ``torch.OutOfMemoryError``, or a RuntimeError saying so (CPU allocators, older torch)."""
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and "out of memory" in str(err))


def run_with_backoff(indices: np.ndarray, batch_size: int, run: Callable[[np.ndarray], None]) -> int:
    """``run(chunk)`` over consecutive chunks of ``indices`` of at most ``batch_size``; on out of
    memory the batch size is halved and the failed chunk retried (``run`` must write its results
    only once it succeeds). Returns the batch size that worked, for the caller's next batches."""
    start = 0
    while start < len(indices):
        chunk = indices[start : start + batch_size]
        try:
            run(chunk)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if batch_size == 1 or not is_out_of_memory(e):
                raise
            del e  # drop the traceback's references to the failed batch's tensors before retrying
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn(f"out of memory at batch size {batch_size}; retrying at {batch_size // 2}", stacklevel=2)
            batch_size //= 2
            continue
        start += len(chunk)
    return batch_size


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
