"""Attention-map transfer between mapped layers (Jiao et al. 2020, "TinyBERT", attention loss
(MSE); Wang et al. 2020, "MiniLM", attention distribution transfer (KL))."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from kdbench.distill.losses._layers import Features, FeatureTerm, LayerMap, layer_pairs, token_mask
from kdbench.registry import LOSSES


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


@LOSSES.register("attention_transfer", level="attention",
                 description="KL or MSE between attention distributions of mapped layers (TinyBERT, MiniLM)",
                 options={"kind": ["kl", "mse"]})
class AttentionTransfer(FeatureTerm):
    """:func:`attention_transfer` as a ``distill.features`` term (``args.kind`` kl or mse):

        L = (1/|M|) Σ_{(i,j)∈M} mean_{b, h, valid q} KL(A_t^j ‖ A_s^i)      (kl; mse: the squared difference)

    Attention maps are compared head by head, so both models need the same number of heads."""

    reads = ("attentions",)

    def __init__(self, pairs: list[tuple[int, int]], kind: str = "kl"):
        super().__init__()
        self.pairs, self.kind = pairs, kind

    @classmethod
    def check_models(cls, student_config, teacher_config) -> str | None:
        s, t = int(student_config.num_attention_heads), int(teacher_config.num_attention_heads)
        if s != t:
            return f"the student has {s} attention heads and the teacher {t}; attention maps are compared head by head"
        return None

    @classmethod
    def build(cls, pairs, student_config, teacher_config, args: dict) -> AttentionTransfer:
        return cls(pairs, args.get("kind", "kl"))

    def term(self, student: Features, teacher: Features, mask: torch.Tensor | None) -> torch.Tensor:
        return attention_transfer(student.attentions, teacher.attentions, self.pairs, self.kind, mask=mask)
