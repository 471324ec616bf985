"""The causal-LM backend against independent computations on the real SmolLM2-135M-Instruct in fp32:
plain per-example transformers forward passes, lm-eval's own HFLM (tokenisation split, rolling
windows) and unbatched greedy generation."""
from __future__ import annotations

from kdbench.backends.causal_lm import cut_at_stop


def test_cut_at_stop():
    assert cut_at_stop("a b\n\nQuestion: x", ["Question:", "\n\n"]) == "a b"
    assert cut_at_stop("no stop", ["###"]) == "no stop"
    assert cut_at_stop("x", []) == "x"
