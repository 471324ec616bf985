"""Layer maps and token masks shared by the feature-level losses."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

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
