"""The out-of-memory stand-in both backoff test files use: which batch sizes fit, and a forward that raises above them."""
from __future__ import annotations

FITS = 4  # the largest batch the patched forward accepts


def _oom_above(model, limit: int, error) -> list[int]:
    """Patch ``model.forward`` to raise ``error`` for batches larger than ``limit``; returns the
    batch sizes seen."""
    seen = []
    forward = model.forward

    def patched(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append(ids.shape[0])
        if ids.shape[0] > limit:
            raise error
        return forward(*args, **kwargs)

    model.forward = patched
    return seen
