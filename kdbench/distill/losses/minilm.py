"""MiniLM self-attention value–value relation distillation (Wang et al. 2020, "MiniLM: Deep
Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained Transformers")."""
from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.distill.losses._layers import Features, FeatureTerm, token_mask
from kdbench.registry import LOSSES


def value_relation(values: torch.Tensor, num_heads: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Log of VR = softmax(V_h V_hᵀ / √d_h) per head, over the last axis (keys).
    ``values`` (batch, length, dim) are split into ``num_heads`` heads of d_h = dim / num_heads."""
    b, n, d = values.shape
    if d % num_heads:
        raise ValueError(f"value width {d} is not divisible by num_heads={num_heads}")
    v = values.float().view(b, n, num_heads, d // num_heads).transpose(1, 2)  # (b, h, n, d_h)
    scores = v @ v.transpose(-1, -2) / math.sqrt(d // num_heads)
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    return F.log_softmax(scores, dim=-1)


def minilm_relation(
    student_values: torch.Tensor, teacher_values: torch.Tensor, num_heads: int, *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Value–value relation transfer from the last self-attention layer:

        VR = softmax(V_h V_hᵀ / √d_h)          per head h, rows over keys
        L  = mean_{b, h, valid q} KL(VR_t[q] ‖ VR_s[q])

    ``student_values``/``teacher_values``: (batch, length, dim) outputs of the value projection
    (widths may differ: each model uses its own d_h). ``num_heads``: the attention heads, the same
    for both (MiniLM), or any common number of relation heads (MiniLMv2). Padded keys
    (``mask`` (batch, length), 1 = real token) are masked before the softmax and padded queries
    left out. MiniLM adds :func:`attention_transfer` (KL) on the last layer to this term.
    """
    if student_values.shape[:2] != teacher_values.shape[:2]:
        raise ValueError(f"student values {tuple(student_values.shape)} and teacher {tuple(teacher_values.shape)} "
                         "differ in batch or length")
    keep = token_mask(mask, student_values.shape[:2], student_values.device)
    log_s = value_relation(student_values, num_heads, keep)
    log_t = value_relation(teacher_values, num_heads, keep)
    p_t = log_t.exp()
    per = torch.where(p_t > 0, p_t * (log_t - log_s), 0.0).sum(-1)  # (b, h, q)
    if keep is None:
        return per.mean()
    return per[keep[:, None, :].expand_as(per)].mean()


# Value projections of self-attention layers: BERT family, Llama family
_VALUE_MODULES = ("attention.self.value", "self_attn.v_proj")


@contextlib.contextmanager
def record_values(model: nn.Module, layer: int = -1) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the value projection output of one self-attention layer of a BERT-family
    (``…layer.<i>.attention.self.value``) or Llama-family (``…layers.<i>.self_attn.v_proj``) model
    during forward passes inside the block: ``with record_values(model) as rec: model(**batch)``;
    then ``rec["values"]``."""
    names = sorted((n for n, _ in model.named_modules() if n.endswith(_VALUE_MODULES)),
                   key=lambda n: int(re.search(r"\.(\d+)\.", n).group(1)))
    if not names:
        raise ValueError(f"{type(model).__name__} has no value projections ('...attention.self.value' or "
                         "'...self_attn.v_proj')")
    module = dict(model.named_modules())[names[layer]]
    record: dict[str, torch.Tensor] = {}
    handle = module.register_forward_hook(lambda _m, _i, out: record.__setitem__("values", out))
    try:
        yield record
    finally:
        handle.remove()


def value_heads(config) -> int:
    """Heads of the value projection: key/value heads for grouped-query attention (Llama family)."""
    return int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)


@LOSSES.register("minilm_relation", level="attention",
                 description="KL between value–value self-attention relations, last layer (MiniLM, Wang et al. 2020)",
                 layer_map=False)
class MiniLMRelation(FeatureTerm):
    """:func:`minilm_relation` as a ``distill.features`` term, on the last layer's value vectors
    with the teacher's value heads as relation heads:

        L = mean_{b, h, valid q} KL(VR_t[q] ‖ VR_s[q]),  VR = softmax(V_h V_hᵀ / √d_h)"""

    reads = ("values",)

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads

    @classmethod
    def check_models(cls, student_config, teacher_config) -> str | None:
        heads = value_heads(teacher_config)
        for who, config in (("student", student_config), ("teacher", teacher_config)):
            width = value_heads(config) * (config.hidden_size // int(config.num_attention_heads))
            if width % heads:
                return f"the {who}'s value width {width} does not split into {heads} relation heads"
        return None

    @classmethod
    def build(cls, pairs, student_config, teacher_config, args: dict) -> MiniLMRelation:
        return cls(value_heads(teacher_config))

    def term(self, student: Features, teacher: Features, mask: torch.Tensor | None) -> torch.Tensor:
        return minilm_relation(student.values, teacher.values, self.num_heads, mask=mask)
