"""What tests/integration/eval/test_speculative.py and tests/unit/backends/test_speculative.py share."""

import pytest

from kdbench.models.loading import load_tokenizer


LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(LM_ID)
