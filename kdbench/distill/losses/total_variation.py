"""Total variation distance on logits (Wen et al. 2023, "f-Divergence Minimization for
Sequence-Level Knowledge Distillation", ACL)."""
from __future__ import annotations

import torch

from kdbench.distill.losses._common import mean_positions, soft_log_probs, t2
from kdbench.registry import LOSSES


@LOSSES.register("tvd", level="logits",
                 description="total variation distance ½·Σ|p − q| (Wen et al. 2023, f-divergence KD)")
def tvd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Total variation distance between teacher p = softmax(z_t / T) and student q = softmax(z_s / T):

        L = s · mean_i ½ · Σ_v |p_v − q_v|        (in [0, s]; symmetric)

    s = T² when ``t2_scaling``, else 1.
    """
    p = soft_log_probs(teacher_logits, temperature).exp()
    q = soft_log_probs(student_logits, temperature).exp()
    return t2(temperature, t2_scaling) * mean_positions(0.5 * (p - q).abs().sum(-1), mask)
