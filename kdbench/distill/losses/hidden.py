"""Hidden-state matching through a learned projection (Romero et al. 2015, "FitNets";
Jiao et al. 2020, "TinyBERT", the hidden-state loss)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from kdbench.distill.losses._layers import Features, FeatureTerm, LayerMap, layer_pairs, token_mask
from kdbench.registry import LOSSES


def hidden_mse(
    student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor], layer_map: LayerMap,
    projection: Callable[[torch.Tensor], torch.Tensor] | Sequence[Callable] | None = None,
    *, mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between mapped hidden states, the student's projected to the teacher's width:

        L = (1/|M|) Σ_{(i, j) ∈ M}  mean_{tokens, dims} (H_s^i W − H_t^j)²

    ``student_hidden``/``teacher_hidden``: per-layer (batch, length, dim) tensors, e.g.
    ``output_hidden_states=True`` outputs (index 0 = embeddings). ``layer_map`` M: explicit
    (student, teacher) index pairs, no default. ``projection``: W, one callable shared by all pairs
    (TinyBERT's single W_h) or one per pair, in map order; ``None`` only when widths match.
    ``mask`` (batch, length), 1 = real token: padding is left out of the mean.
    """
    pairs = layer_pairs(layer_map, len(student_hidden), len(teacher_hidden))
    projs = list(projection) if isinstance(projection, (list, tuple, nn.ModuleList)) else [projection] * len(pairs)
    if len(projs) != len(pairs):
        raise ValueError(f"{len(projs)} projections for {len(pairs)} layer pairs")
    total = 0.0
    for (s, t), proj in zip(pairs, projs):
        h_s, h_t = student_hidden[s].float(), teacher_hidden[t].float()
        if proj is not None:
            h_s = proj(h_s).float()
        if h_s.shape != h_t.shape:
            raise ValueError(f"layer pair ({s}, {t}): student {tuple(h_s.shape)} vs teacher {tuple(h_t.shape)}"
                             + ("" if proj is not None else "; pass a projection when widths differ"))
        sq = (h_s - h_t).pow(2).mean(-1)
        keep = token_mask(mask, sq.shape, sq.device)
        total = total + (sq.mean() if keep is None else sq[keep].mean())
    return total / len(pairs)


@LOSSES.register("hidden_mse", level="hidden",
                 description="MSE between projected student and teacher hidden states of mapped layers (TinyBERT)",
                 options={"projection": ["shared", "per_layer"]})
class HiddenStateMSE(FeatureTerm):
    """:func:`hidden_mse` with its learned projection W (student width → teacher width, no bias,
    shared across layers as in TinyBERT unless ``shared=False``):

        L = (1/|M|) Σ_{(i, j) ∈ M}  mean_{tokens, dims} (H_s^i W − H_t^j)²

    Add this module's parameters to the optimiser alongside the student's (the feature recipe trains
    them with the student). As a ``distill.features`` term: ``args.projection`` shared or per_layer."""

    reads = ("hidden_states",)
    embeddings = True

    def __init__(self, layer_map: LayerMap, student_dim: int, teacher_dim: int, *, shared: bool = True):
        super().__init__()
        self.layer_map = list(layer_map.items()) if isinstance(layer_map, dict) else [tuple(p) for p in layer_map]
        n = 1 if shared else len(self.layer_map)
        self.projections = nn.ModuleList(nn.Linear(student_dim, teacher_dim, bias=False) for _ in range(n))

    @classmethod
    def build(cls, pairs, student_config, teacher_config, args: dict) -> HiddenStateMSE:
        return cls(pairs, student_config.hidden_size, teacher_config.hidden_size,
                   shared=args.get("projection", "shared") == "shared")

    def forward(self, student_hidden, teacher_hidden, mask: torch.Tensor | None = None) -> torch.Tensor:
        projs = list(self.projections) * len(self.layer_map) if len(self.projections) == 1 else list(self.projections)
        return hidden_mse(student_hidden, teacher_hidden, self.layer_map, projs, mask=mask)

    def term(self, student: Features, teacher: Features, mask: torch.Tensor | None) -> torch.Tensor:
        return self(student.hidden_states, teacher.hidden_states, mask)
