"""SmolLM2 and a layer-selected student for the top-k teacher-cache tests."""

import pytest

from kdbench.models.students import layer_selection


@pytest.fixture(scope="module")
def student(lm):
    return layer_selection(lm, [0, 14, 29]).eval()
