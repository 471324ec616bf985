"""Margin-MSE for ranking (Hofstätter et al. 2020, "Improving Efficient Neural Ranking Models
with Cross-Architecture Knowledge Distillation")."""
from __future__ import annotations

import torch

from kdbench.registry import LOSSES


@LOSSES.register("margin_mse", level="ranking",
                 description="MSE between student and teacher score margins s(q,d+) − s(q,d−) "
                             "(Hofstätter et al. 2020)",
                 args={"negatives": {"default": 4, "low": 1, "high": 100,
                                     "help": "hard negatives per query, mined from the teacher's ranking"}})
def margin_mse(
    student_pos: torch.Tensor, student_neg: torch.Tensor, teacher_pos: torch.Tensor, teacher_neg: torch.Tensor,
) -> torch.Tensor:
    """Match score margins between a relevant and a non-relevant passage per query:

        L = mean_q ((s_s(q, d⁺) − s_s(q, d⁻)) − (s_t(q, d⁺) − s_t(q, d⁻)))²

    Scores: ``*_pos`` (batch,) and ``*_neg`` (batch,) or (batch, k) for k hard negatives per
    query (every (d⁺, d⁻) pair counts once). Only margins are matched: adding a constant to all
    of one model's scores for a query leaves L unchanged.
    """
    pos_s, neg_s, pos_t, neg_t = (x.float() for x in (student_pos, student_neg, teacher_pos, teacher_neg))
    if neg_s.dim() == pos_s.dim() + 1:
        pos_s, pos_t = pos_s.unsqueeze(-1), pos_t.unsqueeze(-1)
    margin_s, margin_t = pos_s - neg_s, pos_t - neg_t
    if margin_s.shape != margin_t.shape:
        raise ValueError(f"student margins {tuple(margin_s.shape)} vs teacher {tuple(margin_t.shape)}")
    return (margin_s - margin_t).pow(2).mean()
