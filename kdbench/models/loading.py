"""Load models with ``from_pretrained`` for a task's head, turning failures into one-line errors."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from kdbench import devices
from kdbench.errors import KdbenchError, ModelHeadError
from kdbench.models.heads import auto_class
from kdbench.models.heads import head as head_of


def _offline_hint() -> str:
    return " (HF_HUB_OFFLINE=1: is it in the local Hugging Face cache?)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""


def load_tokenizer(model_id: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(model_id, revision=revision)
    except Exception as e:
        raise KdbenchError(f"model '{model_id}': cannot load tokenizer{_offline_hint()}: {_first_line(e)}") from None


def load_classifier(model_id: str, num_labels: int | None, revision: str | None = None) -> PreTrainedModel:
    """A sequence classifier; a plain encoder checkpoint gets a freshly initialised head with
    ``num_labels`` classes (None keeps a saved classifier's own head, which must then be complete)."""
    return load_for_head(model_id, "classification", revision, fresh_head=num_labels is not None,
                         **({} if num_labels is None else {"num_labels": num_labels}))


def load_for_head(model_id: str, head: str, revision: str | None = None, device: torch.device | None = None, *,
                  fresh_head: bool = False, **config) -> PreTrainedModel:
    """``model_id`` with the transformers auto class registered for ``head``, in fp32 (bf16 by autocast), on
    ``device`` (a resolved ``kdbench.devices`` device; None leaves it on the CPU where it loads);
    ``config`` overrides (e.g. ``num_labels``). Every weight must come from the checkpoint
    (:func:`check_loaded`) unless ``fresh_head``: a head about to be trained here may be new."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # transformers' load report: check_loaded says what matters, as an error
    try:
        with _quiet_progress():
            model, report = auto_class(head).from_pretrained(model_id, revision=revision, dtype=torch.float32,
                                                               output_loading_info=True, **config)
    except Exception as e:
        raise KdbenchError(f"model '{model_id}': cannot load{_offline_hint()}: {_first_line(e)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    check_loaded(model_id, head, model, report, fresh_head=fresh_head)
    return devices.place(model, device)


def fresh_head_weights(model: PreTrainedModel, head: str, name: str) -> bool:
    """Whether ``name`` belongs to the task head a fine-tuning initialises: a weight outside the base
    model (``classifier.*``, ``score.*``), or the pooler a sequence head's classifier reads."""
    prefix = model.base_model_prefix
    if getattr(model, prefix, None) is None:  # the base model itself (AutoModel): it has no head
        return False
    return not name.startswith(f"{prefix}.") or (head_of(head).fresh_pooler and name.startswith(f"{prefix}.pooler."))


def check_loaded(model_id: str, head: str, model: PreTrainedModel, report: dict, *, fresh_head: bool = False) -> None:
    """transformers' loading report (``output_loading_info``): a weight the checkpoint did not have
    (missing) or had in another shape (mismatched) is random, and a model scored with it gives a
    number at chance with nothing to say so. That is an error, except for a weight its head never
    reads (its registered ``unread`` prefixes) and, with ``fresh_head``, exactly the head's own weights. Weights
    the checkpoint has and the head does not use (unexpected: a pretraining head, truncated layers) are fine."""
    unread = head_of(head).unread
    missing = sorted(k for k in report.get("missing_keys", ()) if not k.startswith(unread)
                     and not (fresh_head and fresh_head_weights(model, head, k)))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in report.get("mismatched_keys", ()))
    if missing or mismatched:
        bad = missing + mismatched
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        what = "not in the checkpoint" if missing else "of another shape in the checkpoint"
        if fresh_head:
            hint = "only the head is initialised for fine-tuning"
        elif head_of(head).fine_tuned:
            hint = "give a model fine-tuned with this head (train-and-eval fine-tunes a plain checkpoint: teacher.finetune)"
        else:
            hint = f"give a {head} checkpoint"
        raise ModelHeadError(f"model '{model_id}' as a {head} model ({type(model).__name__}): weights {what} would be "
                           f"random: {shown}; {hint}")


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
