"""Distillation losses: a registry maps a name to a small function (DESIGN.md, "Reference KD trainer").

    from kdbench.distill.losses import LOSSES, forward_kl
    loss = LOSSES["generalized_jsd"](student_logits, teacher_logits, temperature=2.0, t2_scaling=True, beta=0.5)

One module per family: ``kl`` (forward, reverse, skew), ``jsd``, ``total_variation``, ``interpolation`` (TAID), ``mse`` (logits),
``hidden``, ``attention``, ``minilm``, ``embedding``, ``ranking``. ``catalog`` holds names, levels,
descriptions and config arguments without importing torch; this package imports the functions
(and torch) only when one of them is first asked for, so config validation stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

from kdbench.distill.losses.catalog import CATALOG, LEVELS, LossInfo, check_logit_loss, check_loss_args, logit_losses

_FUNCTIONS = {
    "forward_kl": "kl", "reverse_kl": "kl", "skew_kl": "kl", "skew_reverse_kl": "kl",
    "generalized_jsd": "jsd", "tvd": "total_variation", "taid": "interpolation", "logit_mse": "mse",
    "hidden_mse": "hidden", "attention_transfer": "attention", "minilm_relation": "minilm",
    "cosine_embedding": "embedding", "margin_mse": "ranking",
}
_OTHER = {"TAIDSchedule": "interpolation", "HiddenStateMSE": "hidden", "record_values": "minilm", "value_relation": "minilm"}

__all__ = ["LOSSES", "CATALOG", "LEVELS", "LossInfo", "check_logit_loss", "check_loss_args", "logit_losses",
           *_FUNCTIONS, *_OTHER]


def _load(name: str) -> Any:
    return getattr(importlib.import_module(f"{__name__}.{({**_FUNCTIONS, **_OTHER})[name]}"), name)


def __getattr__(name: str) -> Any:
    if name == "LOSSES":
        losses = {key: _load(key) for key in CATALOG}
        globals()["LOSSES"] = losses
        return losses
    if name in _FUNCTIONS or name in _OTHER:
        value = _load(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
