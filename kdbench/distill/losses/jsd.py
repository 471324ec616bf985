"""Generalised Jensen–Shannon divergence JSD(β) on logits (Agarwal et al. 2024, "On-Policy
Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD))."""
from __future__ import annotations

import torch

from kdbench.distill.losses._common import check_unit, kl_rows, log_mix, mean_positions, soft_log_probs, t2
from kdbench.registry import LOSSES


@LOSSES.register("generalized_jsd", level="logits",
                 description="generalised JSD(β): β=0 forward KL, β=1 reverse KL (GKD, Agarwal et al. 2024)",
                 args={"beta": {"default": 0.5, "low": 0.0, "high": 1.0,
                                "help": "mixture weight of the teacher; 0 forward KL, 1 reverse KL"}})
def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, beta: float = 0.5, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalised JSD(β) between teacher p = softmax(z_t / T) and student q = softmax(z_s / T):

        M = β·p + (1 − β)·q
        JSD(β) = β·KL(p ‖ M) + (1 − β)·KL(q ‖ M)          for 0 < β < 1
        JSD(0) = KL(p ‖ q)   (forward KL)
        JSD(1) = KL(q ‖ p)   (reverse KL)

    L = s · mean over positions, s = T² when ``t2_scaling``. β = 0.5 is the symmetric JSD.

    Convention at the endpoints (as GKD and TRL's ``GKDTrainer``): the mixture form is 0 at β = 0
    and β = 1, so the endpoints are special-cased to the divergences the interior tends to in
    *direction*: JSD(β)/β → KL(p ‖ q) as β → 0 and JSD(β)/(1 − β) → KL(q ‖ p) as β → 1. The scale
    is therefore discontinuous there (JSD(β) itself is O(β) near 0): compare losses across β by
    their gradients' direction, and retune the KD weight when moving to an endpoint.
    """
    check_unit("beta", beta)
    log_q = soft_log_probs(student_logits, temperature)
    log_p = soft_log_probs(teacher_logits, temperature)
    if beta == 0:
        per = kl_rows(log_p, log_q)
    elif beta == 1:
        per = kl_rows(log_q, log_p)
    else:
        log_m = log_mix(log_p, log_q, beta)
        per = beta * kl_rows(log_p, log_m) + (1 - beta) * kl_rows(log_q, log_m)
    return t2(temperature, t2_scaling) * mean_positions(per, mask)
