"""SmolLM2 and its real GSM8K generations for the generation-family tests."""
from __future__ import annotations

import pytest

from kdbench.config import EvalConfig
from kdbench.tasks import get_task
from kdbench.tasks.base import RunSettings
from kdbench.tasks.generation import GenerationSettings


MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SETTINGS = RunSettings(dtype="bf16", max_length=512, seed=0, eval=EvalConfig(batch_size=8, bootstrap_samples=1000))


# -------------------------------------------------------------------------------------------------
# real generations
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(data_dir):
    """SmolLM2-135M-Instruct on the first 8 GSM8K test questions (chat prompt, 96 new tokens)."""
    base = get_task("gsm8k")
    spec = base.spec.model_copy(update={"generation": GenerationSettings(max_new_tokens=96)})
    task = type(base)(spec)
    data = task.eval_data(8)
    model = task.load_model(MODEL_ID)
    preds = task.predict(model, data, "teacher", SETTINGS)
    return task, data, model, preds
