"""SmolLM2 and a layer-selected student for the top-k teacher-cache tests."""

import pytest

from kdbench.models.loading import load_for_head
from kdbench.models.students import layer_selection

LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def lm():
    return load_for_head(LM_ID, "causal_lm").eval()


@pytest.fixture(scope="module")
def student(lm):
    return layer_selection(lm, [0, 14, 29]).eval()
