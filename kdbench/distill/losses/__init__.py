"""Distillation losses, one module per family, each loss a function (logit, embedding and ranking
levels) or a :class:`~kdbench.distill.losses._layers.FeatureTerm` (hidden and attention levels)
registered where it is defined (DESIGN.md, "Reference KD trainer")::

    from kdbench.distill.losses import LOSSES, forward_kl
    loss = LOSSES["generalized_jsd"](student_logits, teacher_logits, temperature=2.0, t2_scaling=True, beta=0.5)

A new loss is one decorated function in one module of this package: ``@LOSSES.register(name,
level=..., description=..., args={...})``. The registry reads the decorators without importing the
modules (so config validation and ``kdbench losses`` never import torch); a loss's module is
imported when the loss is first used. Every logit-level loss shares one signature,
``fn(student_logits, teacher_logits, temperature=1.0, t2_scaling=True, *, mask=None, **args)``.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from kdbench.registry import LOSSES

__all__ = ["LOSSES"]


def __getattr__(name: str) -> Any:
    """Any public name of the package's modules (``forward_kl``, the ``hidden_mse`` function,
    ``HiddenStateMSE`` (the ``hidden_mse`` term), ``TAIDSchedule``...), imported on first use."""
    if name.startswith("_"):
        raise AttributeError(name)
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        value = getattr(module, name, None)
        if getattr(value, "__module__", None) == module.__name__:  # defined there, not imported
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
