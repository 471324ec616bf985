"""Distillation losses. A registry maps a name to a small function (DESIGN.md, "Reference KD trainer")."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True
) -> torch.Tensor:
    """Forward KL of softened distributions, averaged over examples (Hinton et al. 2015):

        L = s · mean_i KL(p_T(x_i) ‖ q_T(x_i)),  p_T = softmax(z_t / T), q_T = softmax(z_s / T)

    with s = T² when ``t2_scaling`` (keeps gradient magnitudes comparable across T), else 1.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return kl * (temperature**2 if t2_scaling else 1.0)


LOSSES = {"forward_kl": forward_kl}
