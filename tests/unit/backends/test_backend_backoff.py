"""Out-of-memory back-off of the hf backends on real models: a forward pass that raises an OOM
error above a batch size (as a GPU would) makes the backend halve its batch size and retry, with
results equal to a run that started at the size that fits, in the original order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kdbench.backends.batching import is_out_of_memory, run_with_backoff
from kdbench.backends.hf import HFClassifier
from kdbench.data import DatasetSpec, load_split
from tests.helpers.backend_backoff import FITS, _oom_above


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
