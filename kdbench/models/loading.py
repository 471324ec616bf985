"""Load models with ``from_pretrained`` for a task's head, turning failures into one-line errors."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from kdbench import devices
from kdbench.errors import KdbenchError


def _offline_hint() -> str:
    return " (HF_HUB_OFFLINE=1: is it in the local Hugging Face cache?)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""


def load_tokenizer(model_id: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(model_id, revision=revision)
    except Exception as e:
        raise KdbenchError(f"model '{model_id}': cannot load tokenizer{_offline_hint()}: {_first_line(e)}") from None


# a task's head (kdbench.tasks.base.HEADS) -> the transformers auto class that loads it
AUTO_CLASSES = {
    "classification": AutoModelForSequenceClassification,
    "regression": AutoModelForSequenceClassification,
    "token_classification": AutoModelForTokenClassification,
    "embedding": AutoModel,
    "causal_lm": AutoModelForCausalLM,
}


def load_classifier(model_id: str, num_labels: int | None, revision: str | None = None) -> PreTrainedModel:
    """A sequence classifier; a plain encoder checkpoint gets a freshly initialised head with
    ``num_labels`` classes (None keeps a saved classifier's own head)."""
    return load_for_head(model_id, "classification", revision, **({} if num_labels is None else {"num_labels": num_labels}))


def load_for_head(model_id: str, head: str, revision: str | None = None, device: torch.device | None = None,
                  **config) -> PreTrainedModel:
    """``model_id`` with the transformers class of ``head``, in fp32 (bf16 happens by autocast), on
    ``device`` (a resolved ``kdbench.devices`` device; None leaves it on the CPU where it loads);
    ``config`` overrides (e.g. ``num_labels``) give a plain checkpoint a fresh head."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head" is expected before fine-tuning
    try:
        with _quiet_progress():
            model = AUTO_CLASSES[head].from_pretrained(model_id, revision=revision, dtype=torch.float32, **config)
    except Exception as e:
        raise KdbenchError(f"model '{model_id}': cannot load{_offline_hint()}: {_first_line(e)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return devices.place(model, device)


def model_revision(model_id: str, revision: str | None = None) -> str | None:
    """The hub commit a model id resolves to (from the local cache when offline); for a local
    folder, a digest of its files' names and sizes, so a retrained folder gets a new key."""
    if os.path.isdir(model_id):
        digest = hashlib.sha256()
        for path in sorted(Path(model_id).rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(model_id)}:{path.stat().st_size}".encode())
        return "local-" + digest.hexdigest()[:16]
    try:
        folder = snapshot_download(model_id, revision=revision, allow_patterns=["config.json"])
    except Exception:
        return revision
    return Path(folder).name


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder) -> None:
    """``save_pretrained`` for model and tokenizer, so transformers, lm-eval and vLLM load it as is."""
    with _quiet_progress():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


@contextmanager
def _quiet_progress():
    """No weight-loading/saving bars from transformers: kdbench shows its own progress."""
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
