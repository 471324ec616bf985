"""Out-of-memory back-off of the hf backends on real models: a forward pass that raises an OOM
error above a batch size (as a GPU would) makes the backend halve its batch size and retry, with
results equal to a run that started at the size that fits, in the original order."""
from __future__ import annotations

import numpy as np
import pytest

from kdbench.backends.causal_lm import HFCausalLM
from kdbench.data import DatasetSpec, load_split
from tests.helpers.backend_backoff import FITS, _oom_above


def test_causal_lm_halves_batch_on_cpu_oom(data_dir):
    from kdbench.models.loading import load_for_head, load_tokenizer

    model_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model, tok = load_for_head(model_id, "causal_lm"), load_tokenizer(model_id)
    texts = list(load_split(DatasetSpec("openai/gsm8k", "main", "test"), rows=10).rows["answer"])
    reference = HFCausalLM(model, tok, "fp32", batch_size=FITS, max_length=128).loglikelihood_rolling(texts)
    prompts = [f"Question: {t[:60]}\nAnswer:" for t in texts[:6]]
    ref_gen = HFCausalLM(model, tok, "fp32", batch_size=FITS).generate(prompts, max_new_tokens=6)
    # the CPU allocator's error is a plain RuntimeError
    _oom_above(model, FITS, RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate "
                                         "1073741824 bytes. Buy new RAM! out of memory"))
    try:
        scorer = HFCausalLM(model, tok, "fp32", batch_size=16, max_length=128)
        with pytest.warns(UserWarning, match="out of memory"):
            got = scorer.loglikelihood_rolling(texts)
        generator = HFCausalLM(model, tok, "fp32", batch_size=8)
        with pytest.warns(UserWarning, match="out of memory at batch size 8;"):
            gen = generator.generate(prompts, max_new_tokens=6)
    finally:
        del model.forward
    assert scorer.batch_size == FITS and generator.batch_size == FITS
    np.testing.assert_allclose(got, reference, atol=2e-3)
    assert gen == ref_gen
