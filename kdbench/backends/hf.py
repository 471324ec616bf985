"""The transformers backend: ``torch.inference_mode``, bf16 autocast (AMX on this class of CPU,
tensor cores on a GPU), batches sorted by length with dynamic padding, original order restored; on
the model's device, sharded across launched processes (:mod:`.sharding`)."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdbench import devices, progress
from kdbench.backends import sharding
from kdbench.backends.batching import collate, encode, run_with_backoff, sorted_batches
from kdbench.registry import HEADS

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def autocast(dtype: str, device: torch.device | str):
    """bf16 autocast on ``device``'s kind (CPU or GPU); a no-op context for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


# Sequence heads: a fresh head's classifier reads the pooler, which fine-tuning initialises with it.
@HEADS.register("classification", auto_class="AutoModelForSequenceClassification", pipeline_tag="text-classification",
                fine_tuned=True, fresh_pooler=True)
@HEADS.register("regression", auto_class="AutoModelForSequenceClassification", pipeline_tag="text-classification",
                fine_tuned=True, fresh_pooler=True)
class HFClassifier:
    """Class logits / probabilities from a sequence-classification model."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        dtype: str = "bf16",
        max_length: int = 64,
        batch_size: int = 64,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_length = max_length
        self.batch_size = batch_size

    def logits_of_features(self, features: Sequence[dict], desc: str | None = None) -> np.ndarray:
        lengths = [len(f["input_ids"]) for f in features]
        out = np.empty((len(features), self.model.config.num_labels), dtype=np.float32)

        def run(idx: np.ndarray) -> None:
            batch = devices.to_device(collate(self.tokenizer, [features[i] for i in idx]), self.model.device)
            out[idx] = self.model(**batch).logits.float().cpu().numpy()

        batches = sorted_batches(lengths, self.batch_size)
        with torch.inference_mode(), autocast(self.dtype, self.model.device):
            for idx in progress.bar(sharding.mine(batches), desc=desc, disable=desc is None, unit="batch"):
                self.batch_size = run_with_backoff(idx, self.batch_size, run)
        sharding.gather(out, batches)
        return out

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None = None, desc: str | None = None) -> np.ndarray:
        return self.logits_of_features(encode(self.tokenizer, texts, pairs, self.max_length), desc)
