"""Attention-map transfer between mapped layers (Jiao et al. 2020, "TinyBERT", attention loss
(MSE); Wang et al. 2020, "MiniLM", attention distribution transfer (KL))."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from kdbench.distill.losses._layers import LayerMap, layer_pairs, token_mask


def _attention_kl(a_t: torch.Tensor, a_s: torch.Tensor) -> torch.Tensor:
    """KL(a_t ‖ a_s) over the last axis (keys); 0·log 0 = 0, so padded keys add nothing."""
    tiny = torch.finfo(torch.float32).tiny
    return (torch.xlogy(a_t, a_t) - torch.xlogy(a_t, a_s.clamp_min(tiny))).sum(-1)


def attention_transfer(
    student_attentions: Sequence[torch.Tensor], teacher_attentions: Sequence[torch.Tensor], layer_map: LayerMap,
    kind: Literal["kl", "mse"] = "kl", *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Match the attention distributions of mapped layers. Each A is (batch, heads, queries, keys),
    every row a distribution over keys (``output_attentions=True`` outputs); head counts must match.

        kl:  L = (1/|M|) Σ_{(i,j)∈M} mean_{b, h, valid q} Σ_k A_t^j[k] log(A_t^j[k] / A_s^i[k])
        mse: L = (1/|M|) Σ_{(i,j)∈M} mean_{b, h, valid q, valid k} (A_s^i − A_t^j)²

    KL is teacher first (MiniLM). TinyBERT's MSE was on pre-softmax scores; Hugging Face returns
    probabilities, which is what this compares. ``mask`` (batch, length), 1 = real token.
    """
    if kind not in ("kl", "mse"):
        raise ValueError(f"kind must be 'kl' or 'mse', got {kind!r}")
    pairs = layer_pairs(layer_map, len(student_attentions), len(teacher_attentions))
    total = 0.0
    for s, t in pairs:
        a_s, a_t = student_attentions[s].float(), teacher_attentions[t].float()
        if a_s.shape != a_t.shape:
            raise ValueError(f"layer pair ({s}, {t}): student attentions {tuple(a_s.shape)} vs teacher {tuple(a_t.shape)}")
        b, h, lq, lk = a_s.shape
        keep = token_mask(mask, (b, lk), a_s.device)
        if kind == "kl":
            per = _attention_kl(a_t, a_s)  # (b, h, q)
            rows = None if keep is None else keep[:, None, :].expand(b, h, lq)
        else:
            per = (a_s - a_t).pow(2)  # (b, h, q, k)
            rows = None if keep is None else (keep[:, None, :, None] & keep[:, None, None, :]).expand(b, h, lq, lk)
        total = total + (per.mean() if rows is None else per[rows].mean())
    return total / len(pairs)
