"""The model of the speculative-decoding tests and its tokenizer."""

import pytest

from kdbench.models.loading import load_tokenizer

LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(LM_ID)
