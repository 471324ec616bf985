"""kdbench: a benchmark and evaluation harness for distilled models.

Library use mirrors the CLI::

    import kdbench
    suite = kdbench.load_suite("quickstart", ["data.train_rows=2000"])
    result = kdbench.train_and_eval(suite)          # or kdbench.distill(suite)
    result.score("sst2", "student", "accuracy")     # Score(value=..., ci=(low, high))
    scored = kdbench.evaluate(kdbench.load_suite("retrieval"),
                              {"teacher": "sentence-transformers/all-MiniLM-L6-v2",
                               "student": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
"""
from kdbench._version import __version__

# heavy imports (torch, transformers) only when the API is used, so `kdbench --help` is fast
_LAZY = {"train_and_eval": "kdbench.distill.run", "evaluate": "kdbench.pipeline", "load_suite": "kdbench.config",
         # progress bars in library use: "quiet" (the default), "normal", "verbose"
         "set_verbosity": "kdbench.progress", "RunResult": "kdbench.pipeline", "Score": "kdbench.pipeline"}


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "distill":  # the package, callable as kdbench.distill(suite, ...) = train_and_eval
        return importlib.import_module("kdbench.distill")
    raise AttributeError(name)


__all__ = ["RunResult", "Score", "__version__", "distill", "evaluate", "load_suite", "set_verbosity", "train_and_eval"]
