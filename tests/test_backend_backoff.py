"""Out-of-memory back-off of the hf backends on real models: a forward pass that raises an OOM
error above a batch size (as a GPU would) makes the backend halve its batch size and retry, with
results equal to a run that started at the size that fits, in the original order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.backends.batching import is_out_of_memory, run_with_backoff
from kdbench.backends.causal_lm import HFCausalLM
from kdbench.backends.hf import HFClassifier
from kdbench.data import DatasetSpec, load_split

FITS = 4  # the largest batch the patched forward accepts


def _oom_above(model, limit: int, error) -> list[int]:
    """Patch ``model.forward`` to raise ``error`` for batches larger than ``limit``; returns the
    batch sizes seen."""
    seen = []
    forward = model.forward

    def patched(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append(ids.shape[0])
        if ids.shape[0] > limit:
            raise error
        return forward(*args, **kwargs)

    model.forward = patched
    return seen


@pytest.fixture(scope="module")
def sentences(data_dir) -> list[str]:
    return list(load_split(DatasetSpec("nyu-mll/glue", "sst2", "validation"), rows=20).rows["sentence"])


def test_classifier_halves_batch_on_cuda_oom(teacher_classifier, tokenizer, sentences):
    reference = HFClassifier(teacher_classifier, tokenizer, "fp32", batch_size=FITS).logits(sentences)
    seen = _oom_above(teacher_classifier, FITS, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    try:
        backend = HFClassifier(teacher_classifier, tokenizer, "fp32", batch_size=16)
        with pytest.warns(UserWarning, match="out of memory at batch size (16|8);"):
            got = backend.logits(sentences)
    finally:
        del teacher_classifier.forward  # back to the class's forward
    assert backend.batch_size == FITS and seen[:3] == [16, 8, 4]
    assert max(seen[3:]) == FITS  # later batches start at the size that worked
    np.testing.assert_allclose(got, reference, atol=1e-5)


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


def test_other_errors_and_batch_one_are_not_retried():
    calls = []

    def fails(idx):
        calls.append(len(idx))
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        run_with_backoff(np.arange(8), 8, fails)
    assert calls == [8]  # not an OOM: raised at once

    def always_oom(idx):
        calls.append(len(idx))
        raise torch.OutOfMemoryError("out of memory")

    calls.clear()
    with pytest.raises(torch.OutOfMemoryError), pytest.warns(UserWarning):
        run_with_backoff(np.arange(4), 4, always_oom)
    assert calls == [4, 2, 1]  # halved down to one example, then the error stands
    assert not is_out_of_memory(ValueError("out of memory"))
