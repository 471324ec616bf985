"""Efficiency figures of one saved model: parameters, per-example latency at given batch sizes,
throughput and peak memory.

Each model is measured in a fresh spawned process, so its peak resident memory is its own (not
the training run's) and timings are not disturbed by the parent's allocations.
"""
from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Sequence

import numpy as np


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _measure(model_dir: str, texts: list[str], pairs: list[str] | None, dtype: str, max_length: int,
             batch_sizes: list[int], throughput_batch: int, threads: int) -> dict:
    import torch

    from kdbench.backends.batching import collate, encode
    from kdbench.backends.hf import HFClassifier, autocast
    from kdbench.models.loading import count_parameters, load_classifier, load_tokenizer

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    model = load_classifier(model_dir, num_labels=None).eval()
    backend = HFClassifier(model, tokenizer, dtype=dtype, max_length=max_length, batch_size=throughput_batch)
    out: dict = {"params": count_parameters(model), "dtype": dtype, "threads": threads}

    def run(start: int, size: int) -> None:
        # a request as it arrives: tokenise, pad, forward, softmax
        chunk = slice(start, start + size)
        feats = encode(tokenizer, texts[chunk], pairs[chunk] if pairs else None, max_length)
        with torch.inference_mode(), autocast(dtype):
            torch.softmax(model(**collate(tokenizer, feats)).logits.float(), dim=-1)

    for size in batch_sizes:
        starts = iter(range(0, 10**9, size))
        n_calls = max(8, min(64, 1024 // size))
        for _ in range(3):  # warm-up: first calls pay for kernel selection
            run(next(starts) % max(1, len(texts) - size), size)
        per_call = _median_seconds(lambda: run(next(starts) % max(1, len(texts) - size), size), n_calls)
        out[f"latency_ms_b{size}"] = 1000.0 * per_call / size
    start = time.perf_counter()
    backend.logits(texts, pairs)
    out["throughput_eps"] = len(texts) / (time.perf_counter() - start)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def measure(model_dir: str, texts: Sequence[str], pairs: Sequence[str] | None, *, dtype: str, max_length: int,
            batch_sizes: Sequence[int] = (1, 32), throughput_batch: int = 64, threads: int | None = None) -> dict:
    """Measure in a spawned process. Latency is the median over repeated calls of one batch's wall
    time (tokenisation included) divided by its size: milliseconds per example at that batch size.
    Throughput is examples per second over all ``texts`` with the evaluation batching."""
    import torch

    args = (str(model_dir), list(texts), list(pairs) if pairs else None, dtype, max_length,
            list(batch_sizes), throughput_batch, threads or torch.get_num_threads())
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, args)
