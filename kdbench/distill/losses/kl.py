"""The KL family on logits: forward KL, reverse KL, and DistiLLM's skew KL / skew reverse KL.

Every loss here: temperature-softened p = softmax(z_t / T) (teacher) and q = softmax(z_s / T)
(student) over the last axis, a divergence per position, the mean over positions (``mask`` leaves
out padding), times s = T² when ``t2_scaling`` else 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.distill.losses._common import check_unit, kl_rows, log_mix, mean_positions, soft_log_probs, t2
from kdbench.registry import LOSSES


@LOSSES.register("forward_kl", level="logits",
                 description="KL(teacher ‖ student) of temperature-softened distributions (Hinton et al. 2015)")
def forward_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward KL of softened distributions, averaged over examples (Hinton et al. 2015,
    "Distilling the Knowledge in a Neural Network"):

        L = s · mean_i KL(p_T(x_i) ‖ q_T(x_i)),  p_T = softmax(z_t / T), q_T = softmax(z_s / T)

    with s = T² when ``t2_scaling`` (keeps gradient magnitudes comparable across T), else 1.
    Mean-seeking: the student is pushed to cover every class the teacher gives mass to.
    """
    log_q = soft_log_probs(student_logits, temperature)
    log_p = soft_log_probs(teacher_logits, temperature)
    if mask is None:  # kept bit-identical to the original quickstart loss (kl_div "batchmean" on (N, C))
        positions = log_q.numel() // max(1, log_q.shape[-1])
        kl = F.kl_div(log_q, log_p, log_target=True, reduction="sum") / positions
    else:
        kl = mean_positions(kl_rows(log_p, log_q), mask)
    return kl * t2(temperature, t2_scaling)


@LOSSES.register("reverse_kl", level="logits",
                 description="KL(student ‖ teacher): mode-seeking (MiniLLM, Gu et al. 2024)")
def reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reverse KL, the student's distribution first (Gu et al. 2024, "MiniLLM"):

        L = s · mean_i KL(q_T(x_i) ‖ p_T(x_i)) = s · mean_i Σ_v q_v (log q_v − log p_v)

    Mode-seeking: the student may drop low-probability teacher modes rather than smear over them.
    """
    log_q = soft_log_probs(student_logits, temperature)
    log_p = soft_log_probs(teacher_logits, temperature)
    return t2(temperature, t2_scaling) * mean_positions(kl_rows(log_q, log_p), mask)


@LOSSES.register("skew_kl", level="logits",
                 description="skew KL(p ‖ λp + (1−λ)q) (DistiLLM, Ko et al. 2024)",
                 args={"lam": {"default": 0.1, "low": 0.0, "high": 1.0,
                               "help": "skew λ: weight of the teacher in the mixture; 0 is forward KL"}})
def skew_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, lam: float = 0.1, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Skew forward KL (Ko et al. 2024, "DistiLLM"):

        L = s · mean_i KL(p ‖ λ·p + (1 − λ)·q)

    The teacher mixed into the second argument keeps the divergence finite and its gradient
    bounded where q → 0. λ = 0 is forward KL; λ = 1 is identically 0. DistiLLM uses λ = 0.1.
    """
    check_unit("lam", lam)
    log_q = soft_log_probs(student_logits, temperature)
    log_p = soft_log_probs(teacher_logits, temperature)
    return t2(temperature, t2_scaling) * mean_positions(kl_rows(log_p, log_mix(log_p, log_q, lam)), mask)


@LOSSES.register("skew_reverse_kl", level="logits",
                 description="skew reverse KL(q ‖ λq + (1−λ)p) (DistiLLM, Ko et al. 2024)",
                 args={"lam": {"default": 0.1, "low": 0.0, "high": 1.0,
                               "help": "skew λ: weight of the student in the mixture; 0 is reverse KL"}})
def skew_reverse_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, lam: float = 0.1, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Skew reverse KL (Ko et al. 2024, "DistiLLM"):

        L = s · mean_i KL(q ‖ λ·q + (1 − λ)·p)

    λ = 0 is reverse KL; λ = 1 is identically 0. DistiLLM uses λ = 0.1.
    """
    check_unit("lam", lam)
    log_q = soft_log_probs(student_logits, temperature)
    log_p = soft_log_probs(teacher_logits, temperature)
    return t2(temperature, t2_scaling) * mean_positions(kl_rows(log_q, log_mix(log_q, log_p, lam)), mask)
