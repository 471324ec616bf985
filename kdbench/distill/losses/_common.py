"""Shared pieces of the logit-level losses: softened log-probabilities, T² factor, reduction."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def soft_log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(z / T) over the last axis (the classes / vocabulary), in float32."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(logits.float() / temperature, dim=-1)


def t2(temperature: float, t2_scaling: bool) -> float:
    """The factor s = T² when ``t2_scaling`` (Hinton et al. 2015: soft-target gradients scale as 1/T²), else 1."""
    return temperature**2 if t2_scaling else 1.0


def kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_v p_v (log p_v − log q_v) over the last axis, one value per position."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def log_mix(log_a: torch.Tensor, log_b: torch.Tensor, w: float) -> torch.Tensor:
    """log(w·a + (1 − w)·b) computed in log space; exactly log b at w = 0 and log a at w = 1."""
    if w == 0:
        return log_b
    if w == 1:
        return log_a
    return torch.logsumexp(torch.stack([log_a + math.log(w), log_b + math.log1p(-w)]), dim=0)


def check_unit(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


def mean_positions(per_position: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over positions (examples, or tokens of a sequence); ``mask`` (same shape, True = keep)
    leaves out padding. For (N, C) classifier logits this is the usual ``batchmean``."""
    if mask is None:
        return per_position.mean()
    mask = mask.to(device=per_position.device, dtype=torch.bool)
    if mask.shape != per_position.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match positions {tuple(per_position.shape)}")
    return torch.where(mask, per_position, 0.0).sum() / mask.sum().clamp_min(1)
