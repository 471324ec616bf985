"""Evaluation sharded across launched processes (``accelerate launch`` / ``torchrun``), as
lm-eval's data-parallel mode does it: each process runs every N-th batch of a backend call (N
processes), then all of them gather the results and put them back in the examples' order, so each
process holds the whole output (a teacher's logits for training, predictions for scoring) and the
main one writes the record. A plain process runs every batch and gathers nothing.

The batches are length-sorted before they are dealt out, so every process gets a similar amount of
padding-free work. Gathering goes through ``torch.distributed.all_gather_object`` on the process
group accelerate set up (gloo on CPUs, NCCL on GPUs).
"""
from __future__ import annotations

from collections.abc import MutableSequence, Sequence

import numpy as np


def world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the launched job; (0, 1) in a plain process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mine(batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The batches this process runs: every N-th, starting at its rank."""
    rank, size = world()
    return list(batches[rank::size])


def gather(out: MutableSequence | np.ndarray, batches: Sequence[np.ndarray]) -> None:
    """Fill ``out`` (indexed by example: an array's rows or a list's items) with what the other
    processes computed for their share of ``batches``; every process must call it for the same
    ``batches``."""
    rank, size = world()
    if size == 1:
        return
    import torch.distributed as dist

    rows = [int(i) for batch in batches[rank::size] for i in batch]
    parts: list = [None] * size
    dist.all_gather_object(parts, [(i, out[i]) for i in rows])
    for part in parts:
        for i, value in part:
            out[i] = value
