"""Efficiency figures of one saved model: parameters, per-example latency at given batch sizes,
throughput and peak memory.

Each model is measured in a fresh spawned process, so its peak resident memory is its own (not
the training run's) and timings are not disturbed by the parent's allocations.
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    """This process's resident-memory high-water mark. VmHWM belongs to the process image, unlike
    getrusage's ru_maxrss, which Linux carries over from the parent across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: kilobytes, or bytes on macOS
    return peak / (1024.0**2 if sys.platform == "darwin" else 1024.0)


def _median_seconds(fn, repeats: int, budget_s: float = 10.0, at_least: int = 5) -> float:
    """Median wall time of up to ``repeats`` calls, stopping once ``budget_s`` is spent (after
    ``at_least`` calls): a causal LM's long prompts take a second per call on a CPU."""
    times = []
    spent = 0.0
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if i + 1 >= at_least and spent > budget_s:
            break
    return float(np.median(times))


def _measure(model_dir: str, head: str, texts: list[str], pairs: list[str] | None, dtype: str, max_length: int,
             batch_sizes: list[int], throughput_batch: int, threads: int) -> dict:
    import torch

    from kdbench.backends.batching import collate, encode, sorted_batches
    from kdbench.backends.hf import autocast
    from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer

    torch.set_num_threads(threads)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is None:  # decoder-only tokenizers: batches need a pad token
        tokenizer.pad_token = tokenizer.eos_token
    model = load_for_head(model_dir, head).eval()
    out: dict = {"params": count_parameters(model), "dtype": dtype, "threads": threads, "head": head}

    features = encode(tokenizer, texts, pairs, max_length)
    for size in batch_sizes:
        # batches of consecutive examples as requests arrive (not length-sorted), tokenised and
        # padded beforehand: the teacher and its students share the tokenizer, the model is timed
        n_batches = max(8, min(64, 512 // size))
        batches = [collate(tokenizer, [features[(b * size + j) % len(features)] for j in range(size)])
                   for b in range(n_batches)]  # wraps around when there are fewer examples

        def forward(batch) -> None:
            with torch.inference_mode(), autocast(dtype):
                model(**batch)

        for batch in batches[:2]:  # warm-up: first calls pay for kernel selection
            forward(batch)
        calls = iter(batches)
        per_call = _median_seconds(lambda: forward(next(calls)), len(batches))
        out[f"latency_ms_b{size}"] = 1000.0 * per_call / size
    start = time.perf_counter()
    features = encode(tokenizer, texts, pairs, max_length)  # tokenisation is part of the throughput
    for idx in sorted_batches([len(f["input_ids"]) for f in features], throughput_batch):
        forward(collate(tokenizer, [features[i] for i in idx]))
    out["throughput_eps"] = len(texts) / (time.perf_counter() - start)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def measure(model_dir: str, texts: Sequence[str], pairs: Sequence[str] | None, *, dtype: str, max_length: int,
            head: str = "classification", batch_sizes: Sequence[int] = (1, 32), throughput_batch: int = 64,
            threads: int | None = None) -> dict:
    """Measure in a spawned process, the model loaded with the task's ``head``; the forward pass
    is the head's plain forward (for a causal LM: the prompt pass, not generation). Latency is the median over batches of one forward pass's wall
    time (tokenisation excluded) divided by the batch size: milliseconds per example at that batch
    size. Throughput is examples per second over all ``texts`` end to end (tokenisation included)
    with the evaluation batching (length-sorted, batch ``throughput_batch``)."""
    import torch

    args = (str(model_dir), head, list(texts), list(pairs) if pairs else None, dtype, max_length,
            list(batch_sizes), throughput_batch, threads or torch.get_num_threads())
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return pool.apply(_measure, args)
    finally:
        pool.close()  # let the worker exit on its own (terminate() leaks its semaphores)
        pool.join()
