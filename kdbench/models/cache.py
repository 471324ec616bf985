"""On-disk cache of fine-tuned models, keyed by everything that decides their weights
(base model revision, data content hash, training config), so a second run reuses them.

Entries are written into a temporary sibling and renamed (a killed run leaves none or a whole
one), and made under a lock (:func:`entry_lock`): two runs that need the same fine-tuned model at
once make it once, the second waiting for the first and then loading its entry."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from filelock import FileLock
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdbench.fsio import within
from kdbench.models.loading import save_model

CACHE_ENV = "KDBENCH_CACHE_DIR"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kdbench")


def cache_key(**fields) -> str:
    """Stable digest of JSON-serialisable fields (sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def finetuned_dir(key: str) -> Path:
    return within(cache_root(), "finetuned", key)


@contextmanager
def entry_lock(key: str) -> Iterator[None]:
    """Hold the lock of the fine-tuned entry ``key`` while it is looked up and, if missing, made.
    The processes of one ``accelerate launch`` fine-tune together, so only the main one takes it,
    and the others wait at barriers with it (each then sees the same cache state)."""
    from accelerate import PartialState

    procs = PartialState()
    folder = finetuned_dir(key)
    with FileLock(folder.with_name(f".{key}.lock")) if procs.is_main_process else nullcontext():
        procs.wait_for_everyone()
        yield
        procs.wait_for_everyone()


def is_cached(key: str) -> bool:
    folder = finetuned_dir(key)
    return (folder / "config.json").is_file() and (folder / "kdbench_cache.json").is_file()


def save_finetuned(key: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, manifest: dict) -> Path:
    """Write into a temporary sibling and rename, so a killed run never leaves a half-written entry."""
    final = finetuned_dir(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        save_model(model, tokenizer, tmp)
        (tmp / "kdbench_cache.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
