"""Efficiency figures of one saved model: parameters, per-example latency at given batch sizes,
throughput and peak memory; on a GPU also peak GPU memory, FLOPs, MFU and, for causal LMs, time
to first token and decode speed.

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


def _wall_seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cuda_seconds(fn) -> float:
    """GPU time of one call between two CUDA events on the current stream, waited for."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


def _timed_calls(fn, repeats: int, clock=_wall_seconds, budget_s: float = 10.0, at_least: int = 5) -> list[float]:
    """Seconds of up to ``repeats`` calls, stopping once ``budget_s`` is spent (after ``at_least``
    calls): a causal LM's long prompts take a second per call on a CPU."""
    times = []
    for i in range(repeats):
        times.append(clock(fn))
        if i + 1 >= at_least and sum(times) > budget_s:
            break
    return times


def _decode(model, tokenizer, features: list[dict], sizes: list[int], clock, new_tokens: int = 32) -> dict:
    """Causal LMs: time to first token (prompt pass and one greedy token, batch 1, median over
    prompts) and decode tokens per second at each batch size (``new_tokens`` greedy tokens past
    the first, EOS ignored, every row counted)."""
    import torch

    from kdbench import devices
    from kdbench.backends.batching import collate

    pad = tokenizer.pad_token_id
    features = [f for f in features if f["input_ids"]]  # an empty prompt has no first token to time
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues at the end

    def generate(batch, n: int):
        model.generate(**batch, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad)

    out = {}
    try:
        with torch.no_grad():
            prompts = [devices.to_device(collate(tokenizer, [f]), model.device) for f in features[:8]]
            generate(prompts[0], 2)  # warm-up
            out["ttft_ms"] = 1000.0 * float(np.median([clock(lambda b=b: generate(b, 1)) for b in prompts]))
            for size in sizes:
                batch = devices.to_device(collate(tokenizer, [features[j % len(features)] for j in range(size)]),
                                          model.device)
                first = clock(lambda batch=batch: generate(batch, 1))
                whole = clock(lambda batch=batch: generate(batch, new_tokens + 1))
                out[f"decode_tokens_per_s_b{size}"] = size * new_tokens / max(whole - first, 1e-9)
    finally:
        tokenizer.padding_side = padding_side
    return out


def _measure(model_dir: str, head: str, texts: list[str], pairs: list[str] | None, dtype: str, max_length: int,
             batch_sizes: list[int], throughput_batch: int, threads: int, device: str) -> dict:
    import torch

    from kdbench import devices
    from kdbench.backends import flops
    from kdbench.backends.batching import collate, encode, sorted_batches
    from kdbench.backends.hf import autocast
    from kdbench.models.loading import count_parameters, load_for_head, load_tokenizer

    torch.set_num_threads(threads)
    device = torch.device(device)
    gpu = devices.is_cuda(device)
    devices.configure(device)
    if gpu:
        torch.cuda.reset_peak_memory_stats(device)
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.pad_token is None:  # decoder-only tokenizers: batches need a pad token
        tokenizer.pad_token = tokenizer.eos_token
    model = load_for_head(model_dir, head, device=device).eval()
    out: dict = {"params": count_parameters(model), "dtype": dtype, "threads": threads, "head": head,
                 "device": str(device), "timing": "CUDA events" if gpu else "wall clock"}
    clock = _cuda_seconds if gpu else _wall_seconds
    if gpu:
        out["peak_bf16_tflops"], out["peak_source"] = flops.device_peak(device)

    def forward(batch) -> None:
        with torch.inference_mode(), autocast(dtype, device):
            model(**batch)

    features = encode(tokenizer, texts, pairs, max_length)
    for size in batch_sizes:
        # batches of consecutive examples as requests arrive (not length-sorted), tokenised and
        # padded beforehand (and already on the device): the teacher and its students share the
        # tokenizer, the model is timed
        n_batches = max(8, min(64, 512 // size))
        batches = [devices.to_device(collate(tokenizer, [features[(b * size + j) % len(features)] for j in range(size)]),
                                     device)
                   for b in range(n_batches)]  # wraps around when there are fewer examples
        for batch in batches[:2]:  # warm-up: first calls pay for kernel selection
            forward(batch)
        calls = iter(batches)
        times = _timed_calls(lambda calls=calls: forward(next(calls)), len(batches), clock)
        out[f"latency_ms_b{size}"] = 1000.0 * float(np.median(times)) / size
        if gpu:  # the timed calls' FLOPs as torch counts them, and the share of the peak they reached
            work = sum(flops.count_flops(lambda b=b: forward(b)) for b in batches[:len(times)])
            out[f"flops_per_example_b{size}"] = work / (size * len(times))
            out[f"mfu_b{size}"] = flops.mfu(work, sum(times), out["peak_bf16_tflops"])
    start = time.perf_counter()
    features = encode(tokenizer, texts, pairs, max_length)  # tokenisation is part of the throughput
    for idx in sorted_batches([len(f["input_ids"]) for f in features], throughput_batch):
        forward(devices.to_device(collate(tokenizer, [features[i] for i in idx]), device))
    if gpu:
        torch.cuda.synchronize(device)
    out["throughput_eps"] = len(texts) / (time.perf_counter() - start)
    if gpu and head == "causal_lm":
        out.update(_decode(model, tokenizer, features, batch_sizes, clock))
    out["peak_rss_mb"] = _peak_rss_mb()
    if gpu:
        out["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def measure(model_dir: str, texts: Sequence[str], pairs: Sequence[str] | None, *, dtype: str, max_length: int,
            head: str = "classification", batch_sizes: Sequence[int] = (1, 32), throughput_batch: int = 64,
            threads: int | None = None, device=None) -> dict:
    """Measure in a spawned process on ``device`` (default the CPU), the model loaded with the
    task's ``head``; the forward pass is the head's plain forward (for a causal LM: the prompt pass;
    on a GPU generation is timed as well). Latency is the median over batches of one forward pass's
    time (tokenisation excluded; wall clock on the CPU, CUDA events on a GPU after warm-up) divided
    by the batch size: milliseconds per example at that batch size. Throughput is examples per
    second over all ``texts`` end to end (tokenisation and host-to-device copies included) with the
    evaluation batching (length-sorted, batch ``throughput_batch``). On a GPU also: peak GPU memory
    (``torch.cuda.max_memory_allocated``), counted FLOPs per example and MFU at each latency batch
    size (:mod:`.flops`), and for causal LMs time to first token and decode tokens per second."""
    import torch

    from kdbench import devices

    args = (str(model_dir), head, list(texts), list(pairs) if pairs else None, dtype, max_length,
            list(batch_sizes), throughput_batch, threads or torch.get_num_threads(),
            devices.CPU if device is None else str(device))
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return pool.apply(_measure, args)
    finally:
        pool.close()  # let the worker exit on its own (terminate() leaks its semaphores)
        pool.join()
