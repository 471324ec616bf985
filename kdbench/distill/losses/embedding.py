"""Cosine embedding loss (Sanh et al. 2019, "DistilBERT", the cosine loss aligning hidden-state
directions; used for sentence-embedding distillation as well)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kdbench.distill.losses._common import mean_positions
from kdbench.registry import LOSSES


@LOSSES.register("cosine_embedding", level="embedding",
                 description="1 − cosine similarity of student and teacher embeddings (DistilBERT)")
def cosine_embedding(
    student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor,
    projection: Callable[[torch.Tensor], torch.Tensor] | None = None, *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L = mean_i (1 − cos(W e_s,i, e_t,i)),  cos(a, b) = a·b / (‖a‖ ‖b‖) over the last axis (features).

    Embeddings (batch, dim), or (batch, length, dim) token states with ``mask`` (batch, length)
    leaving padding out. ``projection`` W maps the student's width to the teacher's when they differ.
    Only directions are matched: scaling either embedding leaves L unchanged. In [0, 2].
    """
    e_s = student_embeddings.float() if projection is None else projection(student_embeddings.float()).float()
    e_t = teacher_embeddings.float()
    if e_s.shape != e_t.shape:
        raise ValueError(f"student embeddings {tuple(e_s.shape)} vs teacher {tuple(e_t.shape)}; pass a projection")
    return mean_positions(1 - F.cosine_similarity(e_s, e_t, dim=-1, eps=1e-8), mask)
