"""Training curves (``eval.during_training: {every: N, rows: M}``): a student and its baseline scored
on a held-out slice before the first optimiser step, every N steps and after the last.

"On Teacher Hacking in Language Model Distillation" (Tiapkin et al. 2025) shows that a student can
keep growing closer to its teacher while growing worse on the ground truth; only curves over
training show it. Each point holds the task's own metrics of the model (e.g. perplexity on gold
text, accuracy) and its pair metrics against the teacher (e.g. KL, probability loyalty).

The trainer knows nothing about evaluation: the pipeline opens a :func:`scope` with an evaluator
(``evaluate(role, model, tokenizer, teacher) -> {"metrics": {...}, "pairs": {...}}``), a recipe asks
:func:`for_role` for a :class:`TrainingCurve` and hands it to ``train(step_hooks=...)``, where it
is run and checkpointed like any step hook (a resumed run keeps its earlier points). Evaluation runs
in eval mode inside ``torch.random.fork_rng``: a curve never changes the trained weights.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

import torch

_SCOPE: contextvars.ContextVar[object | None] = contextvars.ContextVar("kdbench_curve_scope", default=None)


@contextlib.contextmanager
def scope(evaluator):
    """Inside, :func:`for_role` makes curves with ``evaluator`` (an object with ``every`` and
    ``__call__(role, model, tokenizer, teacher)``); None: no curves."""
    token = _SCOPE.set(evaluator)
    try:
        yield
    finally:
        _SCOPE.reset(token)


class TrainingCurve:
    """A step hook scoring a model at step 0, every ``every`` optimiser steps and at the last."""

    def __init__(self, every: int, evaluate: Callable[[], dict], model: torch.nn.Module):
        self.every, self.evaluate, self.model = every, evaluate, model
        self.total, self.step, self.points = 0, 0, []

    def _point(self) -> None:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                self.points.append({"step": self.step, **self.evaluate()})
        finally:
            self.model.train(was_training)

    def start(self, total_steps: int) -> None:
        self.total, self.step, self.points = total_steps, 0, []

    def before_training(self) -> None:
        if not self.points:  # a resumed run has its points already
            self._point()

    def after_step(self) -> None:
        self.step += 1
        if self.step % self.every == 0 or self.step == self.total:
            self._point()

    def state_dict(self) -> dict:
        return {"step": self.step, "points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.points = int(state["step"]), list(state["points"])


def for_role(role: str, model: torch.nn.Module, tokenizer, teacher) -> TrainingCurve | None:
    """The curve of ``role``'s training (``model`` is what is trained, ``teacher`` a LoadedModel the
    pair metrics compare with), or None outside a :func:`scope` with an evaluator."""
    evaluator = _SCOPE.get()
    if evaluator is None:
        return None
    return TrainingCurve(evaluator.every, lambda: evaluator(role, model, tokenizer, teacher), model)
