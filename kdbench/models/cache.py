"""On-disk cache of fine-tuned models, keyed by everything that decides their weights
(base model revision, data content hash, training config), so a second run reuses them."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdbench.fsio import write_atomic
from kdbench.models.loading import save_model

CACHE_ENV = "KDBENCH_CACHE_DIR"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "kdbench")


def cache_key(**fields) -> str:
    """Stable digest of JSON-serialisable fields (sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def finetuned_dir(key: str) -> Path:
    return cache_root() / "finetuned" / key


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


def teacher_logits(folder: Path, compute: Callable[[], np.ndarray], **settings) -> tuple[np.ndarray, bool]:
    """Teacher logits over a training set, stored beside the cached teacher with safetensors and
    keyed by ``settings`` (data content hash, max length, dtype), so a rerun does not recompute
    them. A corrupt entry is rebuilt. Returns (logits, reused)."""
    path = Path(folder) / f"logits-{cache_key(**settings)}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["logits"], True
        except Exception:  # unreadable or truncated entry: recompute and overwrite
            pass
    logits = compute()
    write_atomic(path, save({"logits": np.ascontiguousarray(logits, dtype=np.float32)}))
    return logits, False
