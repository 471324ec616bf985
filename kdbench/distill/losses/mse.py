"""Logit matching by mean squared error (Ba & Caruana 2014, "Do Deep Nets Really Need to be
Deep?"; Kim et al. 2021, "Comparing Kullback-Leibler Divergence and Mean Squared Error Loss in
Knowledge Distillation")."""
from __future__ import annotations

import torch

from kdbench.distill.losses._common import mean_positions, t2
from kdbench.registry import LOSSES


@LOSSES.register("logit_mse", level="logits",
                 description="mean squared error between logits (Ba & Caruana 2014; Kim et al. 2021)")
def logit_mse(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, t2_scaling: bool = True,
    *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between softened logits, averaged over classes and positions:

        L = s · mean_i (1/C) Σ_c (z_s,ic / T − z_t,ic / T)²

    On raw logits, not probabilities. With ``t2_scaling`` (s = T²) the temperature cancels and L
    is the plain logit MSE for every T, which is the high-temperature limit of forward KL up to
    a constant (Hinton et al. 2015).
    """
    diff = (student_logits.float() - teacher_logits.float()) / temperature
    return t2(temperature, t2_scaling) * mean_positions(diff.pow(2).mean(-1), mask)
