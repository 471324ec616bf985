"""kdbench: a benchmark and evaluation harness for distilled models.

Library use mirrors the CLI::

    import kdbench
    suite = kdbench.load_suite("quickstart", ["data.train_rows=2000"])
    result = kdbench.train_and_eval(suite)
    result.record["results"]["sst2"]["student"]["accuracy"]
    scored = kdbench.evaluate(kdbench.load_suite("retrieval"),
                              {"teacher": "sentence-transformers/all-MiniLM-L6-v2",
                               "student": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
"""
__version__ = "0.1.0"


def __getattr__(name):
    # heavy imports (torch, transformers) only when the API is used, so `kdbench --help` is fast
    if name == "train_and_eval":
        from kdbench.pipeline import train_and_eval

        return train_and_eval
    if name == "evaluate":
        from kdbench.pipeline import evaluate

        return evaluate
    if name == "load_suite":
        from kdbench.config import load_suite

        return load_suite
    if name == "set_verbosity":  # progress bars in library use: "quiet" (the default), "normal", "verbose"
        from kdbench.progress import set_verbosity

        return set_verbosity
    raise AttributeError(name)


__all__ = ["__version__", "evaluate", "load_suite", "set_verbosity", "train_and_eval"]
