"""Layer maps, token masks and the feature-term interface shared by the feature-level losses."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

LayerMap = Mapping[int, int] | Sequence[tuple[int, int]]


def layer_pairs(layer_map: LayerMap, n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """``{student_index: teacher_index}`` or ``[(student_index, teacher_index), ...]`` as a checked
    list of pairs. Indices are into the model outputs as given (for Hugging Face ``hidden_states``,
    0 is the embedding output and i the output of layer i)."""
    pairs = list(layer_map.items()) if isinstance(layer_map, Mapping) else [tuple(p) for p in layer_map]
    if not pairs:
        raise ValueError("layer_map is empty: name at least one (student, teacher) layer pair")
    for s, t in pairs:
        if not (-n_student <= s < n_student and -n_teacher <= t < n_teacher):
            raise ValueError(f"layer pair ({s}, {t}) out of range: student has {n_student}, teacher {n_teacher} outputs")
    return pairs


def token_mask(mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor | None:
    """A (batch, length) attention mask (1 = real token) as bool, checked against ``shape``."""
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match (batch, length) {tuple(shape)}")
    return mask.to(device=device, dtype=torch.bool)


@dataclass
class Features:
    """What feature terms read of one model's forward pass on a batch: its hidden states and
    attention maps (``output_hidden_states`` / ``output_attentions``) and the output of its last
    self-attention layer's value projection (:func:`kdbench.distill.losses.minilm.record_values`)."""

    hidden_states: Sequence[torch.Tensor] | None = None
    attentions: Sequence[torch.Tensor] | None = None
    values: torch.Tensor | None = None


class FeatureTerm(nn.Module):
    """A ``distill.features`` term (a registered loss of level ``hidden`` or ``attention``), built
    for one training from its config and the two models' configs, then called on every batch.

    ``reads``: the :class:`Features` fields it needs; ``embeddings``: its layer indices are
    ``hidden_states`` indices, 0 the embedding output (the default pairs map 0 ↔ 0 and layer i to
    i + 1); a term registered with ``layer_map=False`` reads the last layer only."""

    reads: ClassVar[tuple[str, ...]] = ()
    embeddings: ClassVar[bool] = False

    @classmethod
    def check_models(cls, student_config, teacher_config) -> str | None:
        """What the term needs of the two models' configs, as a problem message (None: fine)."""
        return None

    @classmethod
    def build(cls, pairs: list[tuple[int, int]] | None, student_config, teacher_config, args: dict) -> FeatureTerm:
        raise NotImplementedError

    def term(self, student: Features, teacher: Features, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
