"""Token-level training data of causal LMs, shared by the causal-LM recipe and the teacher's top-k
cache: (prompt, completion) pairs tokenised with a mask of the tokens the loss scores, right
padding, and the positions a batch's loss is taken at."""
from __future__ import annotations

from collections.abc import Sequence

import torch

# (prompt, completion): the loss scores the completion's tokens given the prompt; a language-
# modelling text is ("", text).
Pair = tuple[str, str]


def encode_pairs(tokenizer, pairs: Sequence[Pair], max_length: int) -> tuple[list[dict], list[list[int]]]:
    """Token features (input_ids, attention_mask) and, per example, a 0/1 mask marking the tokens
    the loss scores (the completion's). Prompt and completion are tokenised apart and joined, so
    the boundary is exact; texts longer than ``max_length`` tokens are cut at the end.

    A plain text (empty prompt) starts with the prefix token — BOS, else EOS — so that its first
    token is learnt as the language-modelling family scores it (lm-eval's rolling log-likelihood).
    """
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    # tokenizers that prepend BOS themselves (Llama 2) get it once, at the start of a prompt
    bos = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", False) else None
    features, masks = [], []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else [prefix]
        if bos is not None and p[:1] != [bos]:
            p = [bos] + p
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        ids, mask = (p + c)[:max_length], ([0] * len(p) + [1] * len(c))[:max_length]
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
        masks.append(mask)
    return features, masks


def right_pad(pad_id: int):
    """A collate function padding token features on the right (causal LMs: positions stay 0..n−1
    and a sequence's logits do not depend on the padding after it)."""
    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = torch.as_tensor(f["input_ids"])
            attention[row, : len(f["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": attention}

    return collate


def scored_positions(batch: dict[str, torch.Tensor], loss_masks: Sequence[Sequence[int]] | None) -> torch.Tensor:
    """(B, L−1) bool: position t predicts token t+1, scored when token t+1 is a completion token
    and not padding. ``loss_masks`` are the batch's per-example masks, in batch order; None: the
    batch's own ``loss_mask`` (an on-policy batch, whose completions the student sampled)."""
    ids = batch["input_ids"]
    if loss_masks is None:
        target = batch["loss_mask"].bool()
    else:
        target = torch.zeros_like(ids, dtype=torch.bool)
        for row, mask in enumerate(loss_masks):
            target[row, : len(mask)] = torch.as_tensor(mask, dtype=torch.bool)
    return target[:, 1:] & batch["attention_mask"][:, 1:].bool()
