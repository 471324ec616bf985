"""Distillation: losses (a registry), the training loop, one recipe skeleton and a recipe per head,
and ``train-and-eval`` (:mod:`kdbench.distill.run`).

The package is also the library's verb: ``kdbench.distill(suite, ...)`` is
:func:`kdbench.distill.run.train_and_eval` (DESIGN.md: ``kdbench.distill(...)``)."""
import sys
import types


class _Distill(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from kdbench.distill.run import train_and_eval

        return train_and_eval(*args, **kwargs)


sys.modules[__name__].__class__ = _Distill
