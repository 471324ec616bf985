"""Student builders. A registry maps a builder name to a small function (DESIGN.md, "Style")."""
from __future__ import annotations

import copy

from transformers import PreTrainedModel

from kdbench.errors import KdbenchError


def _encoder_layers(model: PreTrainedModel):
    """The stacked transformer layers of a BERT-family encoder."""
    base = getattr(model, model.base_model_prefix)
    try:
        return base.encoder.layer
    except AttributeError:
        raise KdbenchError(
            f"student builder layer_selection: {type(model).__name__} has no encoder.layer stack"
        ) from None


def layer_selection(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A shallower copy of ``teacher`` keeping the teacher layers listed in ``layers``, in order.

    Embeddings, pooler and classification head are copied as they are; student layer i gets the
    exact weights of teacher layer ``layers[i]`` (DistilBERT / "PKD" style initialisation).
    """
    teacher_layers = _encoder_layers(teacher)
    n = len(teacher_layers)
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise KdbenchError(f"student.layers {bad}: the teacher has layers 0..{n - 1}")
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    student = type(teacher)(config)
    state = teacher.state_dict()
    prefix = f"{teacher.base_model_prefix}.encoder.layer."
    mapped = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) not in layers:
                continue
            key = f"{prefix}{layers.index(int(index))}.{rest}"
        mapped[key] = value.clone()
    missing, unexpected = student.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KdbenchError(f"layer_selection: weights did not map (missing {missing[:3]}, unexpected {unexpected[:3]})")
    student.config.kdbench_layer_map = list(layers)
    return student


BUILDERS = {"layer_selection": layer_selection}
