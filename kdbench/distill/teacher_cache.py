"""The teacher cache: teacher outputs over a training set (classifier logits, LM top-k
distributions, bi-encoder embeddings) computed once and reused by every student, seed and run that
asks for the same thing.

An entry is one safetensors file (tensors only: never pickle) named by a digest of its key — the
teacher's id and revision, a content hash of the examples and the settings that change the
outputs — with the key itself written into the file's metadata. Loading checks that the file reads,
that its stored key is the key asked for, that every array is there with the expected number of
rows and that floating-point values are finite; anything else is a corrupt or mismatched entry,
rebuilt and overwritten. Writes are atomic, so a killed run leaves the old entry or none, and an
entry is looked up and made under a lock, so two runs that need it at once compute it once.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock
from safetensors import safe_open
from safetensors.numpy import save

from kdbench.fsio import within, write_atomic
from kdbench.models.cache import cache_key, cache_root

Arrays = dict[str, np.ndarray]
KEY_FIELD = "kdbench.key"


def entry_path(kind: str, key: dict) -> Path:
    """Where the entry of ``kind`` (a folder name such as ``teacher_logits``) with ``key`` lives."""
    return within(cache_root(), kind, f"{cache_key(**key)}.safetensors")


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


Rows = int | dict[str, int] | None  # the leading dimension of every array, or per array name


def read_entry(path: Path, key: dict, names: Sequence[str], rows: Rows = None) -> Arrays | None:
    """The arrays of a valid entry, or None when the file is missing, unreadable, written for
    another key, lacks an array, has the wrong number of ``rows`` or holds non-finite floats."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            if (f.metadata() or {}).get(KEY_FIELD) != _key_text(key) or not set(names) <= set(f.keys()):
                return None
            arrays = {name: f.get_tensor(name) for name in names}
    except Exception:  # truncated or not a safetensors file at all
        return None
    for name, array in arrays.items():
        expected = rows.get(name) if isinstance(rows, dict) else rows
        if expected is not None and (array.ndim == 0 or len(array) != expected):
            return None
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return None
    return arrays


def cached_outputs(
    kind: str, key: dict, names: Sequence[str], compute: Callable[[], Arrays], *, rows: Rows = None,
) -> tuple[Arrays, bool]:
    """``compute()``'s arrays ``names`` for ``key``: from the cache when a valid entry exists (see
    ``read_entry``; ``rows`` is the leading dimension every array must have), else computed and
    stored. Returns (arrays, reused). A second process asking for the same entry meanwhile waits
    for this one and reuses its entry."""
    path = entry_path(kind, key)
    with FileLock(path.with_name(f".{path.name}.lock")):
        found = read_entry(path, key, names, rows)
        if found is not None:
            return found, True
        arrays = {name: np.ascontiguousarray(a) for name, a in compute().items()}
        missing = set(names) - set(arrays)
        if missing:
            raise ValueError(f"teacher cache {kind}: compute() returned no {sorted(missing)}")
        write_atomic(path, save(arrays, metadata={KEY_FIELD: _key_text(key)}))
        return arrays, False


def cached_array(kind: str, key: dict, compute: Callable[[], np.ndarray], *, rows: int | None = None,
                 ) -> tuple[np.ndarray, bool]:
    """``cached_outputs`` for one float32 array (classifier logits, embeddings)."""
    arrays, reused = cached_outputs(kind, key, ["values"],
                                    lambda: {"values": np.asarray(compute(), dtype=np.float32)}, rows=rows)
    return arrays["values"], reused
