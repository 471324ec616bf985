"""Whether two models read and write the same tokens: token-level comparisons (metrics on
generated text, a draft model in speculative decoding) pass token ids from one model to the other."""
from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def tokenizer_difference(a: PreTrainedTokenizerBase, b: PreTrainedTokenizerBase) -> str | None:
    """None when ``a`` and ``b`` map every token string to the same id and end sequences with the
    same token, else a short description of the first difference."""
    va, vb = a.get_vocab(), b.get_vocab()
    if len(va) != len(vb):
        return f"vocabularies of {len(va)} and {len(vb)} tokens"
    if va != vb:
        token = next(t for t in va if vb.get(t) != va[t])
        return f"token {token!r} is id {va[token]} in one and {vb.get(token)} in the other"
    if a.eos_token_id != b.eos_token_id:
        return f"end-of-sequence ids {a.eos_token_id} and {b.eos_token_id}"
    return None
