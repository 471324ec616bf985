"""Token-classification inference: one logit vector per *word*, read at the word's first sub-token.

Sentences arrive pre-split into words (``is_split_into_words=True``); the fast tokenizer's
``word_ids()`` say which sub-tokens belong to which word. A word has no first sub-token when
``max_length`` cuts it off, or when the tokenizer maps it to nothing at all (a lone U+FE0F variation
selector in WNUT-17); such words are reported as *unseen* and the caller decides what they predict.
``torch.inference_mode``, bf16 autocast, length-sorted batches with dynamic padding on the model's
device (sharded across launched processes, halving the batch on out of memory), original order
restored.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kdbench import devices, progress
from kdbench.backends import sharding
from kdbench.backends.batching import collate, run_with_backoff, sorted_batches
from kdbench.backends.hf import autocast
from kdbench.errors import KdbenchError
from kdbench.registry import HEADS


@dataclass
class WordEncoding:
    """Tokenised sentences with the word → first-sub-token map.

    ``features[i]``: the model inputs of sentence i, unpadded. ``positions[i]``: the token position
    of the first sub-token of each word the model sees, ``words[i]``: which word that is (same
    length, increasing). ``n_words[i]``: the sentence's word count (seen or not)."""

    features: list[dict[str, list[int]]]
    positions: list[np.ndarray]
    words: list[np.ndarray]
    n_words: list[int]

    def __len__(self) -> int:
        return len(self.features)

    def seen(self, i: int) -> np.ndarray:
        mask = np.zeros(self.n_words[i], dtype=bool)
        mask[self.words[i]] = True
        return mask

    def token_labels(self, i: int, word_labels: np.ndarray, ignore: int = -100) -> np.ndarray:
        """Per-token training targets: the word's class id on its first sub-token, ``ignore``
        elsewhere (later sub-tokens, special tokens, padding)."""
        out = np.full(len(self.features[i]["input_ids"]), ignore, dtype=np.int64)
        out[self.positions[i]] = np.asarray(word_labels)[self.words[i]]
        return out

    def only(self, keep: Sequence[np.ndarray]) -> WordEncoding:
        """The same sentences with only the words ``keep[i]`` (a bool mask per sentence) marks as
        targets, e.g. the words another tokenizer's model also sees."""
        positions, words = [], []
        for pos, wid, mask in zip(self.positions, self.words, keep):
            kept = np.asarray(mask, dtype=bool)[wid]
            positions.append(pos[kept])
            words.append(wid[kept])
        return WordEncoding(self.features, positions, words, self.n_words)

    def gather_index(self, idx: Sequence[int], padded_length: int, padding_side: str) -> tuple[np.ndarray, np.ndarray]:
        """(batch rows, token columns) of every seen word of the examples ``idx``, in example then
        word order, for a batch padded to ``padded_length`` on ``padding_side``."""
        rows, cols = [], []
        for j, i in enumerate(idx):
            shift = padded_length - len(self.features[i]["input_ids"]) if padding_side == "left" else 0
            rows.append(np.full(len(self.positions[i]), j, dtype=np.int64))
            cols.append(self.positions[i] + shift)
        return np.concatenate(rows), np.concatenate(cols)


def encode_words(tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]], max_length: int) -> WordEncoding:
    """Tokenise word-split sentences with truncation at ``max_length`` (no padding)."""
    if not getattr(tokenizer, "is_fast", False):
        raise KdbenchError(f"tokenizer {type(tokenizer).__name__}: token classification needs a fast tokenizer (word_ids)")
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=max_length)
    features, positions, words = [], [], []
    for i in range(len(sentences)):
        features.append({k: enc[k][i] for k in enc.keys()})
        pos, wid, previous = [], [], None
        for t, w in enumerate(enc.word_ids(i)):
            if w is not None and w != previous:
                pos.append(t)
                wid.append(w)
            previous = w
        positions.append(np.asarray(pos, dtype=np.int64))
        words.append(np.asarray(wid, dtype=np.int64))
    return WordEncoding(features, positions, words, [len(s) for s in sentences])


@HEADS.register("token_classification", auto_class="AutoModelForTokenClassification",
                pipeline_tag="token-classification", fine_tuned=True)
class HFTokenClassifier:
    """Per-word logits from a token-classification model."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dtype: str = "bf16",
                 max_length: int = 128, batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.max_length = max_length
        self.batch_size = batch_size

    def encode(self, sentences: Sequence[Sequence[str]]) -> WordEncoding:
        return encode_words(self.tokenizer, sentences, self.max_length)

    def word_logits(self, encoding: WordEncoding, desc: str | None = None) -> list[np.ndarray]:
        """(n_words, classes) float32 logits per sentence, in the input order; rows of unseen words
        are 0 (see ``encoding.seen``)."""
        k = self.model.config.num_labels
        out = [np.zeros((n, k), dtype=np.float32) for n in encoding.n_words]
        lengths = [len(f["input_ids"]) for f in encoding.features]

        def run(idx: np.ndarray) -> None:
            batch = devices.to_device(collate(self.tokenizer, [encoding.features[i] for i in idx]), self.model.device)
            logits = self.model(**batch).logits.float()
            rows, cols = encoding.gather_index(idx, logits.shape[1], self.tokenizer.padding_side)
            picked = logits[torch.as_tensor(rows), torch.as_tensor(cols)].cpu().numpy()
            start = 0
            for i in idx:
                stop = start + len(encoding.words[i])
                out[i][encoding.words[i]] = picked[start:stop]
                start = stop

        batches = sorted_batches(lengths, self.batch_size)
        with torch.inference_mode(), autocast(self.dtype, self.model.device):
            for idx in progress.bar(sharding.mine(batches), desc=desc, disable=desc is None, unit="batch"):
                self.batch_size = run_with_backoff(idx, self.batch_size, run)
        sharding.gather(out, batches)
        return out
